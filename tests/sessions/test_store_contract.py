"""One contract, every store: memory, and Redis as one server, Sentinel, a 3-master Cluster and over TLS.

Every Redis deployment is real (spawned by the fixtures in ``conftest.py``) and shared by the whole session,
so each test gets its own key prefix (its test id). ``peer`` is a second handle on the same data, as a
second gateway replica would have: a separate client for Redis, the same object for the in-process store.
TTLs and leases are short (<= 1 s) so the suite stays fast; margins are wide enough for a loaded machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from broker.sessions.memory import MemoryStore
from broker.sessions.redis_store import RedisStore
from broker.sessions.redis_url import TlsFiles
from broker.sessions.store import SessionStore
from tests.support.redis_topologies import ClusterSetup, SentinelSetup, TlsSetup

STORES = ["memory", "redis", "sentinel", "cluster", "tls"]
SHARED_STORES = STORES[1:]  # the ones several gateway processes can share
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Backend:
    """Where a store keeps its data: ``url`` None for the in-process store."""

    name: str
    url: str | None = None
    tls: TlsFiles | None = None


@pytest.fixture(params=STORES)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each contract test runs once per deployment shape (topologies start on first use)."""
    name: str = request.param
    if name == "memory":
        return Backend(name)
    if name == "redis":
        return Backend(name, request.getfixturevalue("redis_url"))
    if name == "sentinel":
        sentinel: SentinelSetup = request.getfixturevalue("redis_sentinel")
        return Backend(name, sentinel.url)
    if name == "cluster":
        cluster: ClusterSetup = request.getfixturevalue("redis_cluster")
        return Backend(name, cluster.url)
    tls: TlsSetup = request.getfixturevalue("redis_tls")
    return Backend(name, tls.url, tls.tls)


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """Keys of this test (and this store) only: the shared servers outlive it."""
    return f"contract:{request.node.name}:"


@pytest.fixture
async def store(backend: Backend, prefix: str) -> AsyncIterator[SessionStore]:
    s: SessionStore = MemoryStore() if backend.url is None else RedisStore(backend.url, backend.tls, prefix)
    await s.ping()
    yield s
    await s.close()


@pytest.fixture
async def peer(store: SessionStore, backend: Backend, prefix: str) -> AsyncIterator[SessionStore]:
    """The same data through another client (another replica); the same object for the memory store."""
    if backend.url is None:
        yield store
        return
    other = RedisStore(backend.url, backend.tls, prefix)
    yield other
    await other.close()


# -- keys and values ---------------------------------------------------------------------------------------


async def test_ping(store: SessionStore) -> None:
    await store.ping()


async def test_put_get_delete(store: SessionStore, peer: SessionStore) -> None:
    every_byte = bytes(range(256))
    await store.put("session:a", every_byte, 5)
    await store.put("session:é", b"\x00value", 5)
    assert await peer.get("session:a") == every_byte
    assert await peer.get("session:é") == b"\x00value"
    await peer.delete("session:a")
    assert await store.get("session:a") is None
    assert await store.get("session:é") == b"\x00value"


async def test_missing_keys(store: SessionStore) -> None:
    assert await store.get("missing") is None
    assert await store.take("missing") is None
    await store.delete("missing")


async def test_put_replaces_value_and_ttl(store: SessionStore) -> None:
    await store.put("k", b"first", 0.2)
    await store.put("k", b"second", 1.0)
    await asyncio.sleep(0.4)
    assert await store.get("k") == b"second"


async def test_values_expire(store: SessionStore) -> None:
    await store.put("short", b"short", 0.15)
    assert await store.get("short") == b"short"
    await asyncio.sleep(0.35)
    assert await store.get("short") is None
    assert await store.take("short") is None


async def test_take_is_single_use_under_concurrency(store: SessionStore, peer: SessionStore) -> None:
    await store.put("state", b"once", 5)
    results = await asyncio.gather(*((store, peer)[i % 2].take("state") for i in range(5)))
    assert results.count(b"once") == 1 and results.count(None) == 4
    assert await store.get("state") is None


async def test_replace_if_writes_only_over_the_record_that_was_read(
    store: SessionStore, peer: SessionStore
) -> None:
    """Compare-and-set on a header prefix: a writer holding a stale read loses, nothing is ever created."""
    await store.put("rec", b"HEAD1\x00body", 5)
    assert await peer.replace_if("rec", b"HEAD1", b"HEAD2\x00newer", 5)
    assert await store.get("rec") == b"HEAD2\x00newer"
    assert not await store.replace_if("rec", b"HEAD1", b"HEAD3\x00stale", 5)
    assert await peer.get("rec") == b"HEAD2\x00newer"
    assert not await store.replace_if("gone", b"", b"created?", 5)
    assert await peer.get("gone") is None


async def test_replace_if_sets_the_new_ttl(store: SessionStore) -> None:
    await store.put("rec", b"A", 5)
    assert await store.replace_if("rec", b"A", b"B", 0.15)
    await asyncio.sleep(0.35)
    assert await store.get("rec") is None


async def test_replace_if_has_one_winner_under_concurrency(store: SessionStore, peer: SessionStore) -> None:
    await store.put("rec", b"A", 5)
    writers = [store, peer] * 5
    won = await asyncio.gather(
        *(w.replace_if("rec", b"A", f"B{i}".encode(), 5) for i, w in enumerate(writers))
    )
    assert sum(won) == 1
    assert await store.get("rec") == f"B{won.index(True)}".encode()


# -- indexes -----------------------------------------------------------------------------------------------


async def test_index_members_values_and_removal(store: SessionStore, peer: SessionStore) -> None:
    assert await store.index_get("user") == {}
    await store.index_add("user", "s1", b"\x00one", 5)
    await peer.index_add("user", "s2", b"two", 5)
    await store.index_add("user", "s3", bytes(range(256)), 5)
    await store.index_add("other", "s9", b"nine", 5)
    assert await peer.index_get("user") == {"s1": b"\x00one", "s2": b"two", "s3": bytes(range(256))}

    await store.index_add("user", "s1", b"uno", 5)  # a member's value is replaced
    await peer.index_remove("user", "s2")
    await store.index_remove("user", "never-added")
    await store.index_remove("missing-index", "s1")
    assert await store.index_get("user") == {"s1": b"uno", "s3": bytes(range(256))}

    await store.index_remove("user", "s1")
    await store.index_remove("user", "s3")
    assert await store.index_get("user") == {}
    assert await store.index_get("other") == {"s9": b"nine"}


async def test_put_indexed_writes_every_record_and_index(store: SessionStore, peer: SessionStore) -> None:
    """A new session's writes in one call: each record with its own TTL, the member in each index (the
    index TTL extended, never shortened), all visible to another replica."""
    # Both clients connected first (a Cluster client finds its nodes on first use, which may take a while
    # on a loaded machine): the TTLs below are timed from the write.
    assert await peer.get("batch:never-written") is None
    await store.index_add("batch-idx-b", "older", b"kept", 30)
    started = time.monotonic()
    records = [("batch:rec", bytes(range(256)), 1.0), ("batch:meta", b"meta", 30)]
    await store.put_indexed(records, ["batch-idx-a", "batch-idx-b"], "member-1", 1.0)
    assert await peer.get("batch:rec") == bytes(range(256))
    assert await peer.get("batch:meta") == b"meta"
    assert await peer.index_get("batch-idx-a") == {"member-1": b""}
    assert await peer.index_get("batch-idx-b") == {"older": b"kept", "member-1": b""}
    await _sleep_until(started + 1.5)
    assert await peer.get("batch:rec") is None  # its own, shorter TTL
    assert await peer.get("batch:meta") == b"meta"
    assert await peer.index_get("batch-idx-a") == {}
    assert await peer.index_get("batch-idx-b") == {"older": b"kept", "member-1": b""}


async def test_index_ttl_extended_by_longer_never_shortened_then_gone(store: SessionStore) -> None:
    started = time.monotonic()
    await store.index_add("idx", "a", b"1", 0.3)
    await store.index_add("idx", "b", b"2", 1.0)  # extends the index to ~1.0 s
    await _sleep_until(started + 0.5)
    assert await store.index_get("idx") == {"a": b"1", "b": b"2"}
    await store.index_add("idx", "c", b"3", 0.1)  # must not shorten it to ~0.6 s
    await _sleep_until(started + 0.8)
    assert await store.index_get("idx") == {"a": b"1", "b": b"2", "c": b"3"}
    await _sleep_until(started + 1.3)
    assert await store.index_get("idx") == {}


# -- locks -------------------------------------------------------------------------------------------------


async def test_lock_mutual_exclusion(store: SessionStore, peer: SessionStore) -> None:
    inside = 0
    most_inside = 0
    sections = 0

    async def worker(s: SessionStore) -> None:
        nonlocal inside, most_inside, sections
        for _ in range(3):
            async with s.lock("refresh", lease_seconds=1.0, wait_seconds=10) as held:
                assert held
                inside += 1
                most_inside = max(most_inside, inside)
                await asyncio.sleep(0.02)
                inside -= 1
                sections += 1

    await asyncio.gather(worker(store), worker(peer), worker(store), worker(peer))
    assert (most_inside, sections) == (1, 12)


async def test_lock_wait_exceeded_yields_false(store: SessionStore, peer: SessionStore) -> None:
    async with store.lock("busy", lease_seconds=1.0, wait_seconds=1.0) as held:
        assert held
        started = time.monotonic()
        async with peer.lock("busy", lease_seconds=1.0, wait_seconds=0.25) as other:
            assert other is False
        assert 0.1 <= time.monotonic() - started < 1.0
    async with peer.lock("busy", lease_seconds=1.0, wait_seconds=0.25) as again:
        assert again


async def test_lock_lease_extended_while_holder_works(store: SessionStore, peer: SessionStore) -> None:
    lease = 0.4
    holding = asyncio.Event()

    async def slow_holder() -> None:
        async with store.lock("slow", lease_seconds=lease, wait_seconds=1.0) as held:
            assert held
            holding.set()
            await asyncio.sleep(2.5 * lease)

    task = asyncio.create_task(slow_holder())
    await holding.wait()
    started = time.monotonic()
    contenders = []
    for at in (1.2 * lease, 1.9 * lease):  # both after the first lease would have run out
        await _sleep_until(started + at)
        async with peer.lock("slow", lease_seconds=lease, wait_seconds=0.1) as got:
            contenders.append(got)
    await task
    assert contenders == [False, False]
    async with peer.lock("slow", lease_seconds=lease, wait_seconds=0.5) as got:
        assert got


async def test_lock_released_when_holder_is_cancelled_or_raises(
    store: SessionStore, peer: SessionStore
) -> None:
    entered = asyncio.Event()

    async def holder() -> None:
        async with store.lock("work", lease_seconds=5.0, wait_seconds=1.0) as held:
            assert held
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(holder())
    await entered.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    async with peer.lock("work", lease_seconds=5.0, wait_seconds=0.3) as got:  # long before the lease ends
        assert got

    with pytest.raises(RuntimeError, match="boom"):
        async with store.lock("work", lease_seconds=5.0, wait_seconds=1.0) as held:
            assert held
            raise RuntimeError("boom")
    async with peer.lock("work", lease_seconds=5.0, wait_seconds=0.3) as got:
        assert got


@pytest.mark.parametrize("backend", SHARED_STORES, indirect=True)
async def test_lock_of_a_crashed_holder_is_free_after_its_lease(
    store: SessionStore, backend: Backend, prefix: str
) -> None:
    """A replica killed while holding a lock (SIGKILL: no release, no more lease extensions)."""
    lease = 0.5
    assert backend.url is not None
    args: dict[str, object] = {"url": backend.url, "tls": asdict(backend.tls) if backend.tls else None}
    args |= {"prefix": prefix, "name": "crash", "lease": lease}
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.sessions.lock_holder", json.dumps(args),
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 15) == b"held\n"
        await asyncio.sleep(1.5 * lease)  # alive, it keeps the lock past its first lease
        async with store.lock("crash", lease_seconds=lease, wait_seconds=0.1) as got:
            assert got is False
    finally:
        holder.kill()
        await holder.wait()
    killed = time.monotonic()
    async with store.lock("crash", lease_seconds=lease, wait_seconds=5 * lease) as got:
        assert got
        assert time.monotonic() - killed < lease + 0.5


async def _sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


async def test_index_size_counts_members_without_loading_them(
    store: SessionStore, request: pytest.FixtureRequest
) -> None:
    index = f"contract:size:{request.node.name}"
    assert await store.index_size(index) == 0
    for i in range(3):
        await store.index_add(index, f"m{i}", b"v", 60)
    await store.index_remove(index, "m1")
    assert await store.index_size(index) == 2


async def test_capped_add_drops_the_oldest_past_the_cap_and_forgets_the_expired(
    store: SessionStore, peer: SessionStore
) -> None:
    """The bounded, time-ordered set behind ``sessions.max_pending_logins`` (shared by every replica)."""
    now = time.time()
    assert await store.capped_add("order", "a", now, 2, 60) == []
    assert await peer.capped_add("order", "b", now + 1, 2, 60) == []
    assert await store.capped_add("order", "c", now + 2, 2, 60) == ["a"]
    # b and c are older than the TTL at now + 100: forgotten, not counted, not reported as evicted
    assert await peer.capped_add("order", "d", now + 100, 2, 60) == []
    assert await store.capped_add("order", "e", now + 101, 2, 60) == []
    assert await store.capped_add("order", "f", now + 102, 2, 60) == ["d"]
    assert await peer.capped_add("order", "g", now + 103, 2, 60) == ["e"]  # d really left the set


# -- broadcast (session cache invalidations) ---------------------------------------------------------------


async def test_published_messages_reach_every_listener(store: SessionStore, peer: SessionStore) -> None:
    """A message published through one client reaches the listeners of every client, in order."""
    got: dict[str, list[str]] = {"store": [], "peer": []}
    ready: dict[str, asyncio.Event] = {"store": asyncio.Event(), "peer": asyncio.Event()}
    states: list[bool] = []
    stop = asyncio.Event()

    def subscribed(name: str) -> Callable[[bool], None]:
        def report(live: bool) -> None:
            states.append(live)
            if live:
                ready[name].set()

        return report

    tasks = [
        asyncio.create_task(store.listen("chan", got["store"].append, subscribed("store"), stop)),
        asyncio.create_task(peer.listen("chan", got["peer"].append, subscribed("peer"), stop)),
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready.values())), 10)
        for n in range(3):
            await store.publish("chan", f"m{n}")
        await store.publish("other-channel", "not for us")
        for _ in range(200):
            if all(len(v) == 3 for v in got.values()):
                break
            await asyncio.sleep(0.02)
        expected = ["m0", "m1", "m2"]
        assert got["store"] == expected and got["peer"] == expected
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert states[-1] is False  # stopping reports the subscription as gone

"""The session store failing over under traffic (Redis Cluster, Sentinel) or hanging (SIGSTOP): every
failure of a store call is the store's failure, a ``503 session_store_unavailable``, never a 500.

Mid-failover redis-py raises more than ``RedisError`` (``AttributeError: 'NoneType' object has no
attribute 'writelines'`` when a concurrent ``aclose()`` of the cluster client closes a connection under a
command in flight); ``broker/sessions/redis_errors.py`` translates whatever it raises. The gateway runs
with its in-process session cache off (``cache_ttl: 0``), so every request of a signed-in user reads the
store, as the issue's ``manager.read -> redis_store.get`` did.

For every answer collected (``tests/support/traffic.py``): no 500, no stack trace, no "Something went
wrong" page; only each client's normal answer or the 503; and once the replica is promoted, the same
cookies work again (their sessions were replicated before the master died).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp

from broker.sessions.manager import SESSION_PREFIX
from broker.sessions.redis_store import KEY_PREFIX
from broker.sessions.ticket import parse_ticket
from tests.scenarios.test_faults_under_traffic import (
    STORE_DOWN,
    STORE_READERS,
    login_start,
    sign_in,
    whoami_user,
)
from tests.support.redis_topologies import Processes, client, cluster_setup, sentinel_setup, wait_until
from tests.support.stack import ADELE, ALEX, Stack, running_stack
from tests.support.traffic import (
    FAULT,
    Client,
    PersistentRedis,
    Traffic,
    assert_clean,
    session_cookie,
    standard_clients,
)

NO_CACHE = {"cache_ttl": "0"}
FAILOVER_WITHIN = 20.0  # node timeout / down-after (1-2 s) + election + promotion: a few seconds here
UNEXPECTED_PAGE = "Something went wrong"


def session_key(cookie: str) -> str:
    """The Redis key of the (sealed) session record behind a ``Cookie`` header value."""
    ticket = parse_ticket(cookie.split("=", 1)[1])
    assert ticket is not None
    return f"{KEY_PREFIX}{SESSION_PREFIX}{ticket.storage_id()}"


async def crowd(stack: Stack, exits: AsyncExitStack) -> tuple[list[Client], list[str]]:
    """Three signed-in users (Adele and Alex of Contoso, Megan of Fabrikam: 403), anonymous clients, a
    forged ticket, a public route and sign-in starts; and the session cookies of the signed-in users."""
    adele, adele_cookie, megan_cookie = await sign_in(stack, exits)
    alex = await exits.enter_async_context(stack.browser())
    await stack.login(alex, "contoso", ALEX.username)
    alex_cookie = session_cookie(alex)
    # Several clients per signed-in user: the more requests in flight when the client reconnects, the
    # likelier the race of the issue (a connection closed under a command).
    more = [
        Client(f"{n}-json-{i}", "/", c, user=u)
        for i in range(3)
        for n, c, u in (("adele", adele_cookie, ADELE.username), ("alex", alex_cookie, ALEX.username))
    ]
    clients = [
        *standard_clients(adele_cookie, megan_cookie),
        Client("alex-json", "/", alex_cookie, user=ALEX.username),
        *more,
        login_start(stack),
    ]
    return clients, [adele_cookie, alex_cookie, megan_cookie]


def wait_replicated(cookies: list[str], replica_holds: Callable[[str], bool], procs: Processes) -> None:
    """Each cookie's session record is on its replica (replication is asynchronous)."""
    for cookie in cookies:
        holds = functools.partial(replica_holds, session_key(cookie))
        wait_until("session replicated", holds, procs, timeout=5)


def assert_no_unexpected_page(traffic: Traffic) -> None:
    """Not one answer is the 500 page (``assert_clean`` checks the status and ``Traceback``)."""
    bad = [str(s) for s in traffic.samples if UNEXPECTED_PAGE in s.body or "internal_error" in s.body]
    assert not bad, "\n".join(bad[:10])


async def test_cluster_master_killed_under_traffic(tmp_path: Path) -> None:
    """3 masters + 3 replicas; the master holding Adele's session is SIGKILLed while the crowd keeps
    requesting: 503s until its replica is promoted (never a 500), then the same cookies work."""
    (tmp_path / "cluster").mkdir()
    with cluster_setup(tmp_path / "cluster", replicas=1) as cluster:
        async with (
            running_stack(cluster.url, tmp_path, {}, sessions=NO_CACHE) as stack,
            AsyncExitStack() as exits,
        ):
            clients, cookies = await crowd(stack, exits)
            victim, (replica,) = cluster.shard_of(session_key(cookies[0]))
            # Replicated before the crash, so the promoted replica has them.
            on_replica = lambda key: cluster.holds(cluster.shard_of(key)[1][0], key)  # noqa: E731
            wait_replicated(cookies, on_replica, cluster.procs)
            async with Traffic(stack.gateway_url, clients, faults={STORE_DOWN}) as traffic:
                await traffic.each_answered()
                traffic.phase = FAULT
                cluster.kill(victim)
                await traffic.fault_seen(STORE_DOWN, clients=("adele-json",))
                await traffic.until(
                    lambda: replica in cluster.masters() and cluster.healthy(masters=3),
                    "the replica promoted and the cluster ok",
                    FAILOVER_WITHIN,
                )
                await traffic.recover(timeout=FAILOVER_WITHIN)
            assert_clean(traffic)
            assert_no_unexpected_page(traffic)
            async with stack.browser() as later:  # and new sign-ins work on the healed cluster
                await stack.login(later, "contoso", ALEX.username)
                assert await whoami_user(stack, later) == (200, ALEX.username)


async def test_sentinel_master_killed_under_traffic(tmp_path: Path) -> None:
    """Master + replica + 3 sentinels; the master is SIGKILLed under the crowd: 503s until the sentinels
    promote the replica (never a 500), then the same cookies work against the new master."""
    (tmp_path / "sentinel").mkdir()
    with sentinel_setup(tmp_path / "sentinel") as sentinel:
        sentinel.wait_ready_for_failover()
        async with (
            running_stack(sentinel.url, tmp_path, {}, sessions=NO_CACHE) as stack,
            AsyncExitStack() as exits,
        ):
            clients, cookies = await crowd(stack, exits)
            wait_replicated(cookies, lambda key: _replica_holds(sentinel.replica_port, key), sentinel.procs)
            async with Traffic(stack.gateway_url, clients, faults={STORE_DOWN}) as traffic:
                await traffic.each_answered()
                traffic.phase = FAULT
                sentinel.procs.kill("master")
                await traffic.fault_seen(STORE_DOWN, timeout=FAILOVER_WITHIN, clients=STORE_READERS)
                promoted = ("127.0.0.1", sentinel.replica_port)
                await traffic.until(
                    lambda: all(sentinel.master_addr(port) == promoted for port in sentinel.sentinel_ports),
                    "the sentinels promote the replica",
                    FAILOVER_WITHIN,
                )
                await traffic.recover(timeout=FAILOVER_WITHIN)
            assert_clean(traffic)
            assert_no_unexpected_page(traffic)
            assert await whoami_user_with(stack, cookies[0]) == (200, ADELE.username)


async def test_hung_redis_gives_503_within_the_configured_store_timeout(tmp_path: Path) -> None:
    """Redis SIGSTOPped (connections accepted, nothing answered) with ``store_timeout: 1s``: every request
    that needs the store gets its 503 within the configured bound plus a small margin, not after
    redis-py's own socket-timeout retries (4.0 or 8.2 s before); after SIGCONT the same cookies work."""
    store_timeout, margin = 1.0, 0.75
    (tmp_path / "redis").mkdir()
    store = PersistentRedis(tmp_path / "redis")
    store.start()
    try:
        async with (
            running_stack(store.url, tmp_path, {}, sessions={"store_timeout": "1s"}) as stack,
            AsyncExitStack() as exits,
        ):
            clients, cookies = await crowd(stack, exits)
            async with Traffic(stack.gateway_url, clients, faults={STORE_DOWN}) as traffic:
                await traffic.each_answered()
                traffic.phase = FAULT
                store.pause()
                try:
                    await traffic.fault_seen(STORE_DOWN, timeout=10, clients=STORE_READERS)
                    await traffic.each_answered(2, timeout=10)
                finally:
                    store.resume()
                await traffic.recover()
            assert_clean(traffic)
            assert_no_unexpected_page(traffic)
            store_down = traffic.errors(STORE_DOWN)
            assert store_down
            slowest = max(store_down, key=lambda s: s.seconds)
            assert slowest.seconds < store_timeout + margin, f"503 after {slowest.seconds:.2f} s: {slowest}"
            slowest_any = max(traffic.samples, key=lambda s: s.seconds)
            assert slowest_any.seconds < store_timeout + margin, f"answered after {slowest_any.seconds:.2f} s"
            assert await whoami_user_with(stack, cookies[0]) == (200, ADELE.username)
    finally:
        store.stop()


def _replica_holds(port: int, key: str) -> bool:
    with client(port) as c:
        return bool(c.exists(key))


async def whoami_user_with(stack: Stack, cookie: str) -> tuple[int, str | None]:
    """Who the upstream is told about for a request carrying ``cookie`` (a ``Cookie`` header value)."""
    async with aiohttp.ClientSession() as http:
        status, body = await stack.whoami(http, "/", Cookie=cookie)
    return status, body.get("headers", {}).get("X-Remote-User") if status == 200 else body.get("error")

"""Redis store (single server, Sentinel or Cluster; see ``redis_url.py``): shared by every gateway replica.

Every Redis call goes through one ``StoreBoundary`` (``redis_errors.py``): bounded by
``sessions.store_timeout``, and any failure translated, where it enters, into ``SessionStoreUnavailable``
so the rest of the broker answers a clear 503 instead of a stack trace; the client reconnects by itself
when Redis is back. Every command touches one key, so the same code works on a Cluster (no cross-slot
operations). Needs Redis >= 7.0 (GETDEL, PEXPIRE NX/GT).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio.client import PubSub
from redis.asyncio.lock import Lock

from broker.config.schema import DEFAULT_STORE_TIMEOUT
from broker.errors import SessionStoreUnavailable
from broker.ops.tasks import cancel_and_wait, sleep_unless
from broker.sessions.redis_errors import StoreBoundary
from broker.sessions.redis_url import TlsFiles, connect
from broker.sessions.store_health import StoreHealth

log = logging.getLogger(__name__)

KEY_PREFIX = "broker:"
# A subscription silent this long is asked for a PING; one whose PONG does not come within
# PONG_TIMEOUT is treated as lost (a dead peer may not close the socket).
HEARTBEAT = 1.0
PONG_TIMEOUT = 2.0
RESUBSCRIBE_BACKOFF = (0.1, 0.25, 0.5, 1.0)
# Compare-and-set in one server-side step, on one key (so it runs on a Cluster too): write only when the
# record is still the one the caller read (its unique sealed header), never over a change or a tombstone.
REPLACE_IF = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


def _as_bytes(value: bytes | str | None) -> bytes | None:
    """The client is created without decode_responses, so values are bytes; str only for type completeness."""
    return value.encode() if isinstance(value, str) else value


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisStore:
    """``SessionStore`` on Redis; keys are namespaced under ``broker:``."""

    def __init__(
        self,
        url: str,
        tls: TlsFiles | None = None,
        prefix: str = KEY_PREFIX,
        store_timeout: float = DEFAULT_STORE_TIMEOUT,
        health: StoreHealth | None = None,
    ) -> None:
        self._client = connect(url, tls, store_timeout)
        self._prefix = prefix
        self._replace_if = self._client.register_script(REPLACE_IF)
        self._boundary = StoreBoundary(store_timeout, health=health)

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """SET with PX expiry."""
        await self._boundary.run(
            "write", lambda: self._client.set(self._prefix + key, value, px=_ms(ttl_seconds))
        )

    async def get(self, key: str) -> bytes | None:
        """GET."""
        return _as_bytes(
            await self._boundary.run("read", lambda: self._client.get(self._prefix + key), idempotent=True)
        )

    async def replace_if(self, key: str, expected_prefix: bytes, value: bytes, ttl_seconds: float) -> bool:
        """EVALSHA of ``REPLACE_IF`` (redis-py loads the script when the server does not have it)."""
        done = await self._boundary.run(
            "write",
            lambda: self._replace_if(
                keys=[self._prefix + key], args=[expected_prefix, value, _ms(ttl_seconds)]
            ),
        )
        return bool(done)

    async def take(self, key: str) -> bytes | None:
        """GETDEL: atomic on the server, so a state value is consumed once across all replicas."""
        return _as_bytes(await self._boundary.run("take", lambda: self._client.getdel(self._prefix + key)))

    async def delete(self, key: str) -> None:
        """DEL."""
        await self._boundary.run("delete", lambda: self._client.delete(self._prefix + key))

    async def index_add(self, index: str, member: str, value: bytes, ttl_seconds: float) -> None:
        """HSET, then make the hash live at least ``ttl_seconds`` (NX sets a first TTL, GT only extends)."""
        name = self._prefix + index

        async def command() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hset(name, member, value)
                pipe.pexpire(name, _ms(ttl_seconds), nx=True)
                pipe.pexpire(name, _ms(ttl_seconds), gt=True)
                await pipe.execute()

        await self._boundary.run("write", command)

    async def put_indexed(
        self,
        records: Sequence[tuple[str, bytes, float]],
        indexes: Sequence[str],
        member: str,
        index_ttl: float,
    ) -> None:
        """One pipeline (not a transaction: on a Cluster the keys live in different slots): SET with PX for
        each record, then per index HSET and the two PEXPIREs of ``index_add``."""

        async def command() -> None:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, value, ttl_seconds in records:
                    pipe.set(self._prefix + key, value, px=_ms(ttl_seconds))
                for index in indexes:
                    name = self._prefix + index
                    pipe.hset(name, member, b"")
                    pipe.pexpire(name, _ms(index_ttl), nx=True)
                    pipe.pexpire(name, _ms(index_ttl), gt=True)
                await pipe.execute()

        await self._boundary.run("write", command)

    async def index_get(self, index: str) -> dict[str, bytes]:
        """HGETALL."""
        raw = await self._boundary.run(
            "read", lambda: self._client.hgetall(self._prefix + index), idempotent=True
        )
        return {(k.decode() if isinstance(k, bytes) else str(k)): _as_bytes(v) or b"" for k, v in raw.items()}

    async def index_size(self, index: str) -> int:
        """HLEN."""
        return int(
            await self._boundary.run("read", lambda: self._client.hlen(self._prefix + index), idempotent=True)
        )

    async def index_remove(self, index: str, member: str) -> None:
        """HDEL."""
        await self._boundary.run("delete", lambda: self._client.hdel(self._prefix + index, member))

    async def capped_add(self, name: str, member: str, now: float, cap: int, ttl_seconds: float) -> list[str]:
        """A sorted set scored by time, in one MULTI on one key: ZADD, ZREMRANGEBYSCORE past the TTL, then
        ZRANGE + ZREMRANGEBYRANK of whatever exceeds ``cap`` (oldest first)."""
        key = self._prefix + name

        async def command() -> list[Any]:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zadd(key, {member: now})
                pipe.zremrangebyscore(key, "-inf", now - ttl_seconds)
                pipe.zrange(key, 0, -(cap + 1))
                pipe.zremrangebyrank(key, 0, -(cap + 1))
                pipe.pexpire(key, _ms(ttl_seconds))
                return list(await pipe.execute())

        results = await self._boundary.run("write", command)
        return [m.decode() if isinstance(m, bytes) else str(m) for m in results[2]]

    @asynccontextmanager
    async def lock(self, name: str, lease_seconds: float, wait_seconds: float) -> AsyncIterator[bool]:
        """redis-py's lock (a random token under SET NX PX), its lease extended while held."""
        lock = Lock(
            self._client,
            self._prefix + "lock:" + name,
            timeout=lease_seconds,
            sleep=0.05,
            blocking_timeout=wait_seconds,
            thread_local=False,
        )
        # Waiting for another holder is not the store failing: that wait is the caller's to choose.
        bound = wait_seconds + self._boundary.timeout
        acquired = await self._boundary.run("lock", lock.acquire, timeout=bound)
        if not acquired:
            yield False
            return
        released = asyncio.Event()
        keeper = asyncio.create_task(self._keep_lease(lock, lease_seconds, released))
        try:
            yield True
        finally:
            released.set()
            await cancel_and_wait([keeper])
            # A lock not released (lost, or the store down) expires with its lease: nothing to tell the user.
            with contextlib.suppress(SessionStoreUnavailable):
                await self._boundary.run("unlock", lock.release)

    async def _keep_lease(self, lock: Lock, lease_seconds: float, released: asyncio.Event) -> None:
        # Checks ``released`` too: a cancellation arriving during the EXTEND may be swallowed by redis-py.
        while not await sleep_unless(released, lease_seconds / 3):
            try:
                await self._boundary.run("lock extend", lambda: lock.extend(lease_seconds, replace_ttl=True))
            except SessionStoreUnavailable:  # LockError (lost it) included; logged by the boundary
                return

    async def publish(self, channel: str, message: str) -> None:
        """PUBLISH (on a Cluster, classic pub/sub reaches subscribers on every node)."""
        await self._boundary.run("publish", lambda: self._client.publish(self._prefix + channel, message))

    async def listen(
        self,
        channel: str,
        deliver: Callable[[str], None],
        subscribed: Callable[[bool], None],
        stop: asyncio.Event,
    ) -> None:
        """SUBSCRIBE on a dedicated connection, re-established with backoff whenever it is lost."""
        failures = 0
        while not stop.is_set():
            pubsub = self._client.pubsub()
            try:
                # A Cluster client learns its slot map on its first command; SUBSCRIBE needs it.
                await self._client.ping()
                await pubsub.subscribe(self._prefix + channel)
                await self._relay(pubsub, deliver, subscribed, stop)
                failures = 0
            except Exception as exc:  # whatever breaks, the listener must live on (fail closed meanwhile)
                failures += 1
                if failures == 1:
                    log.warning("invalidation subscription lost: %s", type(exc).__name__)
            finally:
                subscribed(False)
                with contextlib.suppress(Exception):  # the listener must live on, whatever closing raises
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            delay = RESUBSCRIBE_BACKOFF[min(failures, len(RESUBSCRIBE_BACKOFF) - 1)]
            await sleep_unless(stop, delay)

    @staticmethod
    async def _relay(
        pubsub: PubSub,
        deliver: Callable[[str], None],
        subscribed: Callable[[bool], None],
        stop: asyncio.Event,
    ) -> None:
        """Pass messages on until ``stop``; raise TimeoutError when the server stops answering PINGs.

        redis-py may reconnect a pub/sub connection by itself and re-subscribe: every ``subscribe``
        confirmation is therefore reported, so the listener starts over after a silent reconnect too.
        """
        loop = asyncio.get_running_loop()
        last_heard = loop.time()
        ping_sent_at: float | None = None
        while not stop.is_set():
            message = await pubsub.get_message(timeout=0.25)
            now = loop.time()
            if message is None:
                if ping_sent_at is None and now - last_heard > HEARTBEAT:
                    await pubsub.ping()
                    ping_sent_at = now
                elif ping_sent_at is not None and now - ping_sent_at > PONG_TIMEOUT:
                    raise TimeoutError("no PONG on the invalidation subscription")
                continue
            last_heard, ping_sent_at = now, None
            kind = message.get("type")
            if kind == "subscribe":
                subscribed(False)
                subscribed(True)
            elif kind == "message":
                data = message.get("data")
                deliver(data.decode() if isinstance(data, bytes) else str(data))

    async def ping(self) -> None:
        """PING."""
        await self._boundary.run("ping", self._client.ping, idempotent=True)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

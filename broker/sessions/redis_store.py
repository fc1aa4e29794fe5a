"""Redis store (single server, Sentinel or Cluster; see ``redis_url.py``): shared by every gateway replica.

Redis errors are translated here, where they enter, into ``SessionStoreUnavailable`` so the rest of the
broker answers a clear 503 instead of a stack trace; the client reconnects by itself when Redis is back.
Every command touches one key, so the same code works on a Cluster (no cross-slot operations).
Needs Redis >= 7.0 (GETDEL, PEXPIRE NX/GT).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from redis.asyncio.lock import Lock
from redis.exceptions import RedisClusterException, RedisError

from broker.errors import SessionStoreUnavailable
from broker.sessions.redis_url import TlsFiles, connect
from broker.tasks import cancel_and_wait, sleep_unless

log = logging.getLogger(__name__)

# redis-py's cluster client raises RedisClusterException (no RedisError) when no node answers or a slot is
# not covered; both mean the store is unavailable.
REDIS_ERRORS = (RedisError, RedisClusterException)

KEY_PREFIX = "broker:"


@contextmanager
def _unavailable_on_error(operation: str) -> Iterator[None]:
    """Map any redis-py error to ``SessionStoreUnavailable`` (the error type only: never keys or values)."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise SessionStoreUnavailable(f"Redis {operation} failed: {type(exc).__name__}") from exc


def _as_bytes(value: bytes | str | None) -> bytes | None:
    """The client is created without decode_responses, so values are bytes; str only for type completeness."""
    return value.encode() if isinstance(value, str) else value


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisStore:
    """``SessionStore`` on Redis; keys are namespaced under ``broker:``."""

    def __init__(self, url: str, tls: TlsFiles | None = None, prefix: str = KEY_PREFIX) -> None:
        self._client = connect(url, tls)
        self._prefix = prefix

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """SET with PX expiry."""
        with _unavailable_on_error("write"):
            await self._client.set(self._prefix + key, value, px=_ms(ttl_seconds))

    async def get(self, key: str) -> bytes | None:
        """GET."""
        with _unavailable_on_error("read"):
            return _as_bytes(await self._client.get(self._prefix + key))

    async def take(self, key: str) -> bytes | None:
        """GETDEL: atomic on the server, so a state value is consumed once across all replicas."""
        with _unavailable_on_error("read"):
            return _as_bytes(await self._client.getdel(self._prefix + key))

    async def delete(self, key: str) -> None:
        """DEL."""
        with _unavailable_on_error("delete"):
            await self._client.delete(self._prefix + key)

    async def index_add(self, index: str, member: str, value: bytes, ttl_seconds: float) -> None:
        """HSET, then make the hash live at least ``ttl_seconds`` (NX sets a first TTL, GT only extends)."""
        name = self._prefix + index
        with _unavailable_on_error("write"):
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hset(name, member, value)
                pipe.pexpire(name, _ms(ttl_seconds), nx=True)
                pipe.pexpire(name, _ms(ttl_seconds), gt=True)
                await pipe.execute()

    async def index_get(self, index: str) -> dict[str, bytes]:
        """HGETALL."""
        with _unavailable_on_error("read"):
            raw = await self._client.hgetall(self._prefix + index)
        return {(k.decode() if isinstance(k, bytes) else str(k)): _as_bytes(v) or b"" for k, v in raw.items()}

    async def index_size(self, index: str) -> int:
        """HLEN."""
        with _unavailable_on_error("read"):
            return int(await self._client.hlen(self._prefix + index))

    async def index_remove(self, index: str, member: str) -> None:
        """HDEL."""
        with _unavailable_on_error("delete"):
            await self._client.hdel(self._prefix + index, member)

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
        with _unavailable_on_error("lock"):
            acquired = await lock.acquire()
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
            with contextlib.suppress(*REDIS_ERRORS):  # LockError is a RedisError
                await lock.release()

    @staticmethod
    async def _keep_lease(lock: Lock, lease_seconds: float, released: asyncio.Event) -> None:
        # Checks ``released`` too: a cancellation arriving during the EXTEND may be swallowed by redis-py.
        while not await sleep_unless(released, lease_seconds / 3):
            try:
                await lock.extend(lease_seconds, replace_ttl=True)
            except REDIS_ERRORS as exc:  # LockError (lost it) is a RedisError
                log.warning("could not extend a lock lease: %s", type(exc).__name__)
                return

    async def ping(self) -> None:
        """PING."""
        with _unavailable_on_error("ping"):
            await self._client.ping()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

"""Redis store (``redis://`` / ``rediss://``): shared by every gateway replica.

Redis errors are translated here, where they enter, into ``SessionStoreUnavailable`` so the rest of the
broker answers a clear 503 instead of a stack trace; the client reconnects by itself when Redis is back.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import redis.asyncio as redis
from redis.exceptions import RedisError

from broker.errors import SessionStoreUnavailable

KEY_PREFIX = "broker:"
SOCKET_TIMEOUT = 2.0


@contextmanager
def _unavailable_on_error(operation: str) -> Iterator[None]:
    """Map any redis-py error to ``SessionStoreUnavailable`` (the error type only: never keys or values)."""
    try:
        yield
    except RedisError as exc:
        raise SessionStoreUnavailable(f"Redis {operation} failed: {type(exc).__name__}") from exc


def _as_bytes(value: bytes | str | None) -> bytes | None:
    """The client is created without decode_responses, so values are bytes; str only for type completeness."""
    return value.encode() if isinstance(value, str) else value


class RedisStore:
    """``SessionStore`` on a Redis server; keys are namespaced under ``broker:``."""

    def __init__(self, url: str, prefix: str = KEY_PREFIX) -> None:
        self._client: redis.Redis = redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            health_check_interval=30,
        )
        self._prefix = prefix

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """SET with PX expiry (at least 1 ms)."""
        with _unavailable_on_error("write"):
            await self._client.set(self._prefix + key, value, px=max(1, math.ceil(ttl_seconds * 1000)))

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

    async def ping(self) -> None:
        """PING."""
        with _unavailable_on_error("ping"):
            await self._client.ping()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

"""Redis store (``redis://`` / ``rediss://``): shared by every gateway replica.

Redis errors are translated here into ``SessionStoreUnavailable`` so the rest of the broker answers a
clear 503 instead of a stack trace, and the client reconnects by itself when Redis comes back.
"""

from __future__ import annotations

import math

import redis.asyncio as redis
from redis.exceptions import RedisError

from broker.errors import SessionStoreUnavailable

KEY_PREFIX = "broker:"
SOCKET_TIMEOUT = 2.0


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
        try:
            await self._client.set(self._prefix + key, value, px=max(1, math.ceil(ttl_seconds * 1000)))
        except RedisError as exc:
            raise SessionStoreUnavailable(f"Redis write failed: {type(exc).__name__}") from exc

    async def get(self, key: str) -> bytes | None:
        """GET."""
        try:
            value = await self._client.get(self._prefix + key)
        except RedisError as exc:
            raise SessionStoreUnavailable(f"Redis read failed: {type(exc).__name__}") from exc
        return _as_bytes(value)

    async def take(self, key: str) -> bytes | None:
        """GETDEL: atomic on the server, so a state value is consumed once across all replicas."""
        try:
            value = await self._client.getdel(self._prefix + key)
        except RedisError as exc:
            raise SessionStoreUnavailable(f"Redis read failed: {type(exc).__name__}") from exc
        return _as_bytes(value)

    async def delete(self, key: str) -> None:
        """DEL."""
        try:
            await self._client.delete(self._prefix + key)
        except RedisError as exc:
            raise SessionStoreUnavailable(f"Redis delete failed: {type(exc).__name__}") from exc

    async def ping(self) -> None:
        """PING."""
        try:
            await self._client.ping()
        except RedisError as exc:
            raise SessionStoreUnavailable(f"Redis unreachable: {type(exc).__name__}") from exc

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

"""A real redis-server made full: ``maxmemory`` reached with ``noeviction``, so reads work, writes fail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis


@asynccontextmanager
async def full_redis(url: str) -> AsyncIterator[redis.Redis]:
    """While inside, every write to the Redis at ``url`` is refused with OOM (as at ``maxmemory`` with
    ``noeviction``) and every read still answers; the limit is lifted on the way out. Yields an admin
    client (for reads)."""
    admin = redis.Redis.from_url(url)
    try:
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", "1")  # below what is used already: every write is refused
        try:
            await admin.set("probe", b"x")
        except redis.ResponseError as exc:
            assert "maxmemory" in str(exc), exc
        else:
            raise AssertionError("Redis accepted a write above maxmemory")
        yield admin
    finally:
        await admin.config_set("maxmemory", "0")
        await admin.aclose()

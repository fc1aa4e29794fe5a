"""One contract, every store: the memory store and a real Redis server behave the same."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from broker.sessions.memory import MemoryStore
from broker.sessions.redis_store import RedisStore
from broker.sessions.store import SessionStore


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    s: SessionStore = (
        MemoryStore() if request.param == "memory" else RedisStore(request.getfixturevalue("redis_url"))
    )
    await s.ping()
    yield s
    await s.close()


async def test_put_get_delete(store: SessionStore) -> None:
    await store.put("contract:a", b"\x00value", 60)
    assert await store.get("contract:a") == b"\x00value"
    await store.delete("contract:a")
    assert await store.get("contract:a") is None


async def test_take_is_single_use(store: SessionStore) -> None:
    await store.put("contract:t", b"once", 60)
    results = await asyncio.gather(*(store.take("contract:t") for _ in range(5)))
    assert results.count(b"once") == 1 and results.count(None) == 4


async def test_values_expire(store: SessionStore) -> None:
    await store.put("contract:e", b"short", 0.05)
    await asyncio.sleep(0.2)
    assert await store.get("contract:e") is None
    assert await store.take("contract:e") is None


async def test_missing_keys(store: SessionStore) -> None:
    assert await store.get("contract:missing") is None
    await store.delete("contract:missing")

"""The per-process generation floor refuses records put back, never the current record of a concurrent read.

A request reads a session while another request of the same process writes its next generation (a refresh
or the last-seen touch under concurrent requests). The first read's record was the current one when it was
read; refusing it would turn a live session into a 401 at random under load (seen once in the suite).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable

from broker.sessions.manager import SessionManager
from broker.sessions.model import Session
from broker.sessions.redis_store import RedisStore
from broker.sessions.sealing import ServerKeys

HOUR = 3600.0


class WriteDuringRead(RedisStore):
    """A real Redis store that, once, lets another task's write land between a read's answer from Redis
    and the reader resuming: the interleaving that asyncio produces under load, made deterministic."""

    between: Callable[[], Awaitable[object]] | None = None

    async def get(self, key: str) -> bytes | None:
        value = await super().get(key)
        between, self.between = self.between, None
        if between is not None:
            await between()
        return value


def adele(now: float) -> Session:
    return Session(login_code="contoso", tid="t", oid="o", name="Adele", refresh_token="r")


async def test_a_read_overtaken_by_a_write_of_the_same_process_is_served(fresh_redis_url: str) -> None:
    store = WriteDuringRead(fresh_redis_url)
    try:
        manager = SessionManager(store, 8 * HOUR, 24 * HOUR, keys=ServerKeys.random())
        now = time.time()
        ticket = await manager.create(adele(now), now)
        key = manager.bind(ticket)
        assert key is not None
        record = "s:" + key.storage_id()
        captured = await store.get(record)
        first = await manager.read(key)
        assert first is not None and captured is not None
        touched = dataclasses.replace(first.session, last_seen=now + 61)
        store.between = lambda: manager.replace(key, first, touched, now + 61, announce=False)
        overtaken = await manager.read(key)  # reads generation N; N + 1 is written before it resumes
        assert overtaken is not None and overtaken.generation == first.generation
        latest = await manager.read(key)
        assert latest is not None and latest.generation == first.generation + 1
        # A record put back *after* this process saw the newer generation is still refused.
        await store.put(record, captured, HOUR)
        assert await manager.read(key) is None
    finally:
        await store.close()

"""In-process store for one gateway process (demo, development): no Redis needed."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class NamedLock:
    """One name's lock and how many tasks hold it or wait for it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class MemoryStore:
    """Dicts with expiry times; expired entries are dropped lazily and by a periodic sweep."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, sweep_every: int = 1000) -> None:
        self._clock = clock
        self._items: dict[str, tuple[float, bytes]] = {}
        self._indexes: dict[str, tuple[float, dict[str, bytes]]] = {}
        self._capped: dict[str, OrderedDict[str, float]] = {}
        self._locks: dict[str, NamedLock] = {}
        self._listeners: dict[str, list[Callable[[str], None]]] = {}
        self._writes = 0
        self._sweep_every = sweep_every

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """Store with an expiry; every ``sweep_every`` writes, drop what has expired."""
        self._items[key] = (self._clock() + ttl_seconds, value)
        self._writes += 1
        if self._writes % self._sweep_every == 0:
            self._sweep()

    def _sweep(self) -> None:
        now = self._clock()
        for k in [k for k, (exp, _) in self._items.items() if exp <= now]:
            del self._items[k]
        for k in [k for k, (exp, _) in self._indexes.items() if exp <= now]:
            del self._indexes[k]

    async def get(self, key: str) -> bytes | None:
        """The value, unless absent or expired."""
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._items[key]
            return None
        return item[1]

    async def replace_if(self, key: str, expected_prefix: bytes, value: bytes, ttl_seconds: float) -> bool:
        """Compare-and-set with no await between the read and the write: atomic on the event loop."""
        current = await self.get(key)
        if current is None or not current.startswith(expected_prefix):
            return False
        await self.put(key, value, ttl_seconds)
        return True

    async def take(self, key: str) -> bytes | None:
        """Get and delete in one step (no await in between, so it is atomic on the event loop)."""
        value = await self.get(key)
        self._items.pop(key, None)
        return value

    async def delete(self, key: str) -> None:
        """Remove the key."""
        self._items.pop(key, None)

    async def index_add(self, index: str, member: str, value: bytes, ttl_seconds: float) -> None:
        """Add a member; the index expires with its longest-lived member."""
        expires, members = self._indexes.get(index, (0.0, {}))
        if expires <= self._clock():
            members = {}
        members[member] = value
        self._indexes[index] = (max(expires, self._clock() + ttl_seconds), members)

    async def put_indexed(
        self,
        records: Sequence[tuple[str, bytes, float]],
        indexes: Sequence[str],
        member: str,
        index_ttl: float,
    ) -> None:
        """Each record, then the member in each index (no round trips to save in memory)."""
        for key, value, ttl_seconds in records:
            await self.put(key, value, ttl_seconds)
        for index in indexes:
            await self.index_add(index, member, b"", index_ttl)

    async def index_get(self, index: str) -> dict[str, bytes]:
        """Members of a live index."""
        entry = self._indexes.get(index)
        if entry is None or entry[0] <= self._clock():
            return {}
        return dict(entry[1])

    async def index_size(self, index: str) -> int:
        """Members of a live index."""
        return len(await self.index_get(index))

    async def index_remove(self, index: str, member: str) -> None:
        """Remove a member (and the index once empty)."""
        entry = self._indexes.get(index)
        if entry is not None:
            entry[1].pop(member, None)
            if not entry[1]:
                del self._indexes[index]

    async def capped_add(self, name: str, member: str, now: float, cap: int, ttl_seconds: float) -> list[str]:
        """An insertion-ordered dict: the oldest members are at its front."""
        members = self._capped.setdefault(name, OrderedDict())
        members.pop(member, None)
        members[member] = now
        while members and next(iter(members.values())) <= now - ttl_seconds:
            members.popitem(last=False)
        dropped = []
        while len(members) > cap:
            dropped.append(members.popitem(last=False)[0])
        return dropped

    @asynccontextmanager
    async def lock(self, name: str, lease_seconds: float, wait_seconds: float) -> AsyncIterator[bool]:
        """One process: an asyncio lock per name (no lease needed: a crashed holder crashes us too)."""
        named = self._locks.setdefault(name, NamedLock())
        # Counted here rather than read from asyncio.Lock's private waiter list: the entry goes when the
        # last holder or waiter leaves, so the dict holds only names in use.
        named.users += 1
        try:
            try:
                await asyncio.wait_for(named.lock.acquire(), wait_seconds)
            except TimeoutError:
                yield False
                return
            try:
                yield True
            finally:
                named.lock.release()
        finally:
            named.users -= 1
            if named.users == 0:
                self._locks.pop(name, None)

    async def publish(self, channel: str, message: str) -> None:
        """Deliver to this process's listeners at once."""
        for deliver in list(self._listeners.get(channel, [])):
            deliver(message)

    async def listen(
        self,
        channel: str,
        deliver: Callable[[str], None],
        subscribed: Callable[[bool], None],
        stop: asyncio.Event,
    ) -> None:
        """Subscribed from the start until ``stop`` (nothing can cut an in-process subscription)."""
        listeners = self._listeners.setdefault(channel, [])
        listeners.append(deliver)
        subscribed(True)
        try:
            await stop.wait()
        finally:
            listeners.remove(deliver)
            subscribed(False)

    async def ping(self) -> None:
        """Always reachable."""

    async def close(self) -> None:
        """Nothing to release."""

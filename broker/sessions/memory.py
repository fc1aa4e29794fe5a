"""In-process store for one gateway process (demo, development): no Redis needed."""

from __future__ import annotations

import time
from collections.abc import Callable


class MemoryStore:
    """A dict with expiry times; expired entries are dropped lazily and by a periodic sweep."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, sweep_every: int = 1000) -> None:
        self._clock = clock
        self._items: dict[str, tuple[float, bytes]] = {}
        self._writes = 0
        self._sweep_every = sweep_every

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """Store with an expiry; every ``sweep_every`` writes, drop what has expired."""
        self._items[key] = (self._clock() + ttl_seconds, value)
        self._writes += 1
        if self._writes % self._sweep_every == 0:
            now = self._clock()
            for k in [k for k, (exp, _) in self._items.items() if exp <= now]:
                del self._items[k]

    async def get(self, key: str) -> bytes | None:
        """The value, unless absent or expired."""
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._items[key]
            return None
        return item[1]

    async def take(self, key: str) -> bytes | None:
        """Get and delete in one step (no await in between, so it is atomic on the event loop)."""
        value = await self.get(key)
        self._items.pop(key, None)
        return value

    async def delete(self, key: str) -> None:
        """Remove the key."""
        self._items.pop(key, None)

    async def ping(self) -> None:
        """Always reachable."""

    async def close(self) -> None:
        """Nothing to release."""

"""The ``SessionStore`` contract: keys -> bytes with TTLs, an atomic take, small indexes, a leased lock, and
a broadcast channel (cache invalidations).

Everything above it (sessions, login state) is sealed before it gets here, so stores only ever see
ciphertext under hashed keys. Indexes map a hashed user or Entra session to the storage ids of its broker
sessions (for front-channel logout, "sign out everywhere" and the sessions CLI). Implementations translate
their own errors into ``SessionStoreUnavailable``. One contract test suite runs against every store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol


class SessionStore(Protocol):
    """The one interface every store implements."""

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """Store ``value`` under ``key`` for ``ttl_seconds`` (replacing any previous value)."""

    async def get(self, key: str) -> bytes | None:
        """The value under ``key``, or None when absent or expired."""

    async def replace_if(self, key: str, expected_prefix: bytes, value: bytes, ttl_seconds: float) -> bool:
        """Compare-and-set: store ``value`` only if the current value starts with ``expected_prefix``
        (a sealed record's unique header); False, changing nothing, when it does not or is gone."""

    async def take(self, key: str) -> bytes | None:
        """Atomically get and delete (single-use values such as login state)."""

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""

    async def index_add(self, index: str, member: str, value: bytes, ttl_seconds: float) -> None:
        """Set ``member`` -> ``value`` in ``index``; the index lives at least ``ttl_seconds`` more."""

    async def put_indexed(
        self,
        records: Sequence[tuple[str, bytes, float]],
        indexes: Sequence[str],
        member: str,
        index_ttl: float,
    ) -> None:
        """``put`` each ``(key, value, ttl_seconds)`` of ``records`` and ``index_add`` ``member`` (empty
        value) to each of ``indexes``, in one round trip where the store can: a new session's writes (record,
        meta record, its indexes) were five round trips of every login. Not atomic: a failure may leave
        some written (a new session's, unreachable without the ticket that was never handed out)."""

    async def index_get(self, index: str) -> dict[str, bytes]:
        """Every member of ``index`` with its value (empty when the index does not exist)."""

    async def index_remove(self, index: str, member: str) -> None:
        """Remove ``member`` from ``index``."""

    async def index_size(self, index: str) -> int:
        """How many members ``index`` has (without loading them)."""

    async def capped_add(self, name: str, member: str, now: float, cap: int, ttl_seconds: float) -> list[str]:
        """Add ``member`` at time ``now`` to the time-ordered set ``name``, forget members older than
        ``ttl_seconds``, and keep at most ``cap``: return the oldest members dropped to stay under it."""

    def lock(self, name: str, lease_seconds: float, wait_seconds: float) -> AbstractAsyncContextManager[bool]:
        """Hold ``name`` exclusively (across every replica sharing the store).

        Yields True when acquired within ``wait_seconds`` (the lease is extended while held, so a slow
        holder keeps it; a crashed one loses it after ``lease_seconds``), False when not acquired.
        """

    async def publish(self, channel: str, message: str) -> None:
        """Send ``message`` to every process listening on ``channel`` now (fire and forget, no history)."""

    async def listen(
        self,
        channel: str,
        deliver: Callable[[str], None],
        subscribed: Callable[[bool], None],
        stop: asyncio.Event,
    ) -> None:
        """Until ``stop`` is set: subscribe to ``channel`` and pass each message to ``deliver``.

        ``subscribed(True)`` is called each time the subscription is (re)established, ``subscribed(False)``
        each time it is lost or given up; messages sent in between are lost, so a listener must treat a
        new subscription as "anything may have changed". Reconnects by itself; never raises.
        """

    async def ping(self) -> None:
        """Raise ``SessionStoreUnavailable`` when the store cannot be reached."""

    async def close(self) -> None:
        """Release connections."""

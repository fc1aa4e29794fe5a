"""The ``SessionStore`` contract: a small key -> bytes store with TTLs and an atomic take.

Everything above it (sessions, login state) is sealed before it gets here, so stores only ever see
ciphertext under hashed keys. Implementations translate their own errors into ``SessionStoreUnavailable``.
"""

from __future__ import annotations

from typing import Protocol


class SessionStore(Protocol):
    """Key -> opaque bytes with a time to live; the one interface every store implements."""

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """Store ``value`` under ``key`` for ``ttl_seconds`` (replacing any previous value)."""

    async def get(self, key: str) -> bytes | None:
        """The value under ``key``, or None when absent or expired."""

    async def take(self, key: str) -> bytes | None:
        """Atomically get and delete (single-use values such as login state)."""

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""

    async def ping(self) -> None:
        """Raise ``SessionStoreUnavailable`` when the store cannot be reached."""

    async def close(self) -> None:
        """Release connections."""

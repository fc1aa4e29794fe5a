"""Keeping in-process caches bounded: when to sweep out expired entries, and how.

The assertion cache, the identity-header cache and the session cache all hold entries that expire, keyed by
something a session brings (a ticket, an assertion). Entries of sessions that went quiet would otherwise
stay until the cache is full, so each sweeps every ``SWEEP_EVERY`` insertions and at least every
``SWEEP_INTERVAL`` seconds; a sweep drops what has expired and, if the cache is still full, its oldest half.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")

SWEEP_EVERY = 1024
SWEEP_INTERVAL = 30.0


class SweepSchedule:
    """Says when a cache of at most ``max_entries`` entries should sweep (asked once per insertion)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._inserted = 0
        self._next_sweep = 0.0

    def due(self, size: int, now: float) -> bool:
        """True when full, every ``SWEEP_EVERY`` insertions, or ``SWEEP_INTERVAL`` after the last sweep."""
        self._inserted += 1
        if size < self.max_entries and self._inserted % SWEEP_EVERY and now < self._next_sweep:
            return False
        self._next_sweep = now + SWEEP_INTERVAL
        return True


def sweep(entries: dict[K, V], expires_at: Callable[[V], float], now: float, max_entries: int) -> None:
    """Drop expired entries; if still at ``max_entries``, drop the oldest half (insertion order)."""
    for key in [k for k, v in entries.items() if expires_at(v) <= now]:
        del entries[key]
    if len(entries) >= max_entries:
        for key in list(entries)[: len(entries) // 2]:
            del entries[key]

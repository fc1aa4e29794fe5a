"""What this process has seen of each session's generation, so a record put back in the store is refused.

A Redis writer who captured an old sealed record (and holds its ticket) could put it back after a
refresh or a logout. The store cannot tell (the writer owns it), but a gateway process that has already
seen a newer generation, or the session's revocation, can: it refuses anything older. This memory is per
process, bounded and lost at restart, so it narrows rollback; it cannot rule it out (docs/security.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from broker.ops.caches import SweepSchedule, sweep

DEFAULT_MAX_ENTRIES = 200_000
REVOKED = 2**64  # above any generation a record can carry


class GenerationFloor:
    """The lowest generation this process still accepts, per storage id, until the session's end."""

    def __init__(
        self, max_entries: int = DEFAULT_MAX_ENTRIES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[int, float]] = {}
        self._sweeps = SweepSchedule(max_entries)

    def minimum(self, storage_id: str) -> int:
        """The lowest generation still accepted: 0 when this process has seen nothing of the session (or
        forgot it), ``REVOKED`` once it saw the revocation.

        A reader takes this *before* it asks the store: a record read while another task of this process
        writes the next generation is the current one of its moment, not one put back (comparing it with
        the floor after the read would refuse a live session under concurrent requests)."""
        entry = self._entries.get(storage_id)
        return 0 if entry is None or entry[1] <= self._clock() else entry[0]

    def saw(self, storage_id: str, generation: int, lifetime: float) -> None:
        """Remember ``generation`` (or ``REVOKED``) for at most ``lifetime`` seconds."""
        now = self._clock()
        entry = self._entries.get(storage_id)
        if entry is not None and entry[1] > now and entry[0] >= generation:
            return
        if self._sweeps.due(len(self._entries), now):
            sweep(self._entries, lambda e: e[1], now, self._sweeps.max_entries)
        self._entries[storage_id] = (generation, now + lifetime)

    def revoked(self, storage_id: str, lifetime: float) -> None:
        """The session was revoked: refuse every record of it from now on."""
        self.saw(storage_id, REVOKED, lifetime)

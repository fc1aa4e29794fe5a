"""What the session store's recent failures say about it, per process.

A Redis at ``maxmemory`` with ``noeviction`` answers every read and refuses every write. The broker then
keeps serving signed-in users (their sessions were read and verified), but it must neither hammer the
full store with a bookkeeping write on every request nor pretend all is well: the store boundary records
each failed store operation here, which (a) counts it in ``broker_session_store_errors_total{operation}``,
(b) makes the session manager skip bookkeeping writes (last seen) for ``BOOKKEEPING_BACKOFF`` seconds, and
(c) makes ``/.auth/readyz`` say ``session_store: degraded`` for ``DEGRADED_WINDOW`` seconds.

The state is two numbers (the time of the last failed write, and nothing per session or per key), so it
stays bounded whatever the traffic.
"""

from __future__ import annotations

from collections.abc import Callable

# After a failed write, bookkeeping writes wait this long: one attempt (and one log line) per interval
# per process instead of one per request. Last seen is then at most this much staler than usual: nothing
# next to an idle timeout measured in hours.
BOOKKEEPING_BACKOFF = 30.0
# readyz says "degraded" this long after the last failed write: longer than the back-off, so a store
# that keeps refusing the retries stays "degraded" without a gap while users are active.
DEGRADED_WINDOW = 60.0


def _not_counted(operation: str) -> None:
    """The default counter: stores built outside a gateway (tools, tests) count nothing."""


class StoreHealth:
    """When a store write last failed, and a counter of every failed store operation by kind."""

    def __init__(self, clock: Callable[[], float], count: Callable[[str], None] = _not_counted) -> None:
        self._clock = clock
        self._count = count
        self._last_write_failure: float | None = None

    def failed(self, operation: str, *, write: bool) -> None:
        """One store operation failed (``operation`` is a bounded name: read, write, take, lock, ...)."""
        self._count(operation)
        if write:
            self.write_refused()

    def write_refused(self) -> None:
        """A write failed (uncounted: for callers that hear of it after the store counted it)."""
        self._last_write_failure = self._clock()

    def write_failed_within(self, seconds: float) -> bool:
        """Whether a write failed in the last ``seconds`` (a clock that went back counts as no)."""
        last = self._last_write_failure
        if last is None:
            return False
        elapsed = self._clock() - last
        return 0.0 <= elapsed < seconds

    def backing_off(self) -> bool:
        """Bookkeeping writes are to be skipped now: one failed within ``BOOKKEEPING_BACKOFF``."""
        return self.write_failed_within(BOOKKEEPING_BACKOFF)

    def degraded(self) -> bool:
        """Reads may work, but a write failed within ``DEGRADED_WINDOW`` (readyz)."""
        return self.write_failed_within(DEGRADED_WINDOW)

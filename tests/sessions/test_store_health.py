"""StoreHealth: the bookkeeping back-off and readyz's "degraded" window, on a clock the test moves."""

from __future__ import annotations

from broker.sessions.store_health import BOOKKEEPING_BACKOFF, DEGRADED_WINDOW, StoreHealth


def test_a_failed_write_starts_the_back_off_and_the_degraded_window_and_both_end() -> None:
    now = [1000.0]
    counted: list[str] = []
    health = StoreHealth(lambda: now[0], counted.append)
    health.failed("read", write=False)
    assert not health.backing_off() and not health.degraded()  # a failed read is not a full store
    health.failed("write", write=True)
    assert counted == ["read", "write"]
    assert health.backing_off() and health.degraded()
    now[0] += BOOKKEEPING_BACKOFF
    assert not health.backing_off() and health.degraded()
    now[0] = 1000.0 + DEGRADED_WINDOW
    assert not health.degraded()


def test_a_clock_that_went_back_ends_the_back_off() -> None:
    """A wall clock stepped back must not hold bookkeeping writes off for as long as it stepped."""
    now = [1000.0]
    health = StoreHealth(lambda: now[0])
    health.write_refused()
    now[0] -= 3600.0
    assert not health.backing_off() and not health.degraded()

"""Where redis-py's exceptions enter the broker: every store operation runs through ``StoreBoundary.run``.

Like HTTPX's ``map_httpcore_exceptions``, the translation is total: *any* ``Exception`` a store call
raises becomes ``SessionStoreUnavailable`` (a clear 503), with the original chained. Mid-failover
redis-py raises more than ``RedisError``: ``RedisClusterException`` (not a ``RedisError``), bare
``OSError``, and ``AttributeError`` when a concurrent ``aclose()`` of the cluster client has set a
connection's writer to None under a command in flight. ``BaseException`` (``asyncio.CancelledError``)
passes through untouched: a cancelled request must stay cancelled.

Each failure is also recorded in the store's ``StoreHealth`` (counted by operation; a failed write makes
readyz say "degraded" and pauses bookkeeping writes).

Each operation, retries included, is bounded by ``sessions.store_timeout`` (``asyncio.timeout``), so no
user waits on the store longer than that. Idempotent reads are tried once more when their connection
broke under them; writes never are (see ``run``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from broker.errors import SessionStoreUnavailable
from broker.sessions.store_health import StoreHealth

log = logging.getLogger(__name__)

T = TypeVar("T")

# What an unreachable, slow or failing-over Redis is known to raise: logged without a traceback, which
# would say nothing more. ``TimeoutError`` is also what ``asyncio.timeout`` raises at the overall bound.
EXPECTED_FAILURES: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError, TimeoutError)
# The connection broke under the command (reset, refused, closed by a concurrent disconnect): a second try
# gets a fresh connection, since redis-py reconnects any connection it finds closed. A timeout is not
# among them: a server that did not answer in time is not faster on the next try, and the budget is spent.
BROKEN_CONNECTION: tuple[type[Exception], ...] = (RedisConnectionError, OSError, AttributeError)
# During an outage every request fails the same way: one log line per this many seconds per kind
# (expected / unexpected), with the count of those not logged.
LOG_EVERY = 10.0


class FailureLog:
    """Logs store failures without flooding: expected ones as one warning line, unexpected ones with
    their traceback, each kind at most once per ``every`` seconds (the rest are counted)."""

    def __init__(self, every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        self._last: dict[bool, float] = {}
        self._unlogged: dict[bool, int] = {False: 0, True: 0}

    def record(self, operation: str, exc: Exception) -> bool:
        """Log ``exc`` unless one of its kind was logged in the last ``every`` seconds; True if logged."""
        unexpected = not isinstance(exc, EXPECTED_FAILURES)
        now = self._clock()
        last = self._last.get(unexpected)
        if last is not None and now - last < self._every:
            self._unlogged[unexpected] += 1
            return False
        unlogged, self._unlogged[unexpected] = self._unlogged[unexpected], 0
        self._last[unexpected] = now
        # The exception's type only in the line: redis-py messages may echo a command's arguments (keys).
        log.warning(
            "session store %s failed: %s%s",
            operation,
            type(exc).__name__,
            f" ({unlogged} more not logged)" if unlogged else "",
            exc_info=exc if unexpected else None,
            extra={"event": "store_failure", "unexpected": unexpected},
        )
        return True


class StoreBoundary:
    """Runs store operations under one time bound and translates every failure into
    ``SessionStoreUnavailable``."""

    def __init__(
        self, timeout: float, failures: FailureLog | None = None, health: StoreHealth | None = None
    ) -> None:
        self.timeout = timeout
        self._failures = failures or FailureLog()
        # Counts each failure and remembers failed writes (readyz "degraded", the bookkeeping back-off).
        self.health = health or StoreHealth(time.monotonic)

    async def run(
        self,
        operation: str,
        command: Callable[[], Awaitable[T]],
        *,
        idempotent: bool = False,
        timeout: float | None = None,
    ) -> T:
        """``await command()`` within ``timeout`` (default: the store timeout), retried once on a broken
        connection when ``idempotent``.

        Writes are never retried blindly: when the connection breaks after the command was sent, it may
        have been applied. Replaying GETDEL would consume a login state twice (a legitimate sign-in would
        fail as "unknown state" instead of a clear 503), replaying SET could resurrect a session revoked
        in between by another replica, and a replayed lock acquire or PUBLISH is not the same operation.
        A 503 lets the user (or the caller) retry knowing nothing half-happened silently.
        """
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                try:
                    return await command()
                except BROKEN_CONNECTION as exc:
                    if not idempotent:
                        raise
                    log.info("session store %s: %s, trying once more", operation, type(exc).__name__)
                    return await command()
        except Exception as exc:  # not BaseException: cancellation passes through
            # Every non-idempotent command writes (SET, EVALSHA, GETDEL, HSET, a lock): one refused when
            # Redis is full is what makes the store "degraded" while its reads still work.
            self.health.failed(operation, write=not idempotent)
            raise self.unavailable(operation, exc) from exc

    def unavailable(self, operation: str, exc: Exception) -> SessionStoreUnavailable:
        """``exc`` as the store's failure (logged, rate-limited); the message names its type only."""
        self._failures.record(operation, exc)
        return SessionStoreUnavailable(f"Redis {operation} failed: {type(exc).__name__}")

"""The store boundary (``broker/sessions/redis_errors.py``): whatever a Redis call raises is the store's
failure (``SessionStoreUnavailable``, a 503), never a 500; cancellation passes; reads retry once.

The real faults (a Cluster or Sentinel master killed, Redis stopped) are in
``tests/scenarios/test_store_failover_under_traffic.py``; here each exception class redis-py defines is
raised by a stand-in command, in the HTTPX style, so a class added by a redis-py upgrade is covered too.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time

import pytest
import redis.exceptions

from broker.errors import SessionStoreUnavailable
from broker.sessions.redis_errors import EXPECTED_FAILURES, FailureLog, StoreBoundary


def _redis_exception_classes() -> list[type[Exception]]:
    classes = [
        value
        for value in vars(redis.exceptions).values()
        if inspect.isclass(value) and issubclass(value, Exception)
    ]
    assert len(classes) > 30  # the walk found redis-py's hierarchy, not an empty module
    return classes


def _instance(cls: type[Exception]) -> Exception:
    try:
        return cls("Error 111 connecting to 127.0.0.1:7001. Connection refused.")
    except Exception:  # MovedError / AskError parse "slot host:port"
        return cls("3999 127.0.0.1:7001")


# Besides redis-py's own: what its connection code lets through mid-failover (the traceback was
# ``AttributeError: 'NoneType' object has no attribute 'writelines'``), and anything else at all.
OTHERS: list[Exception] = [
    AttributeError("'NoneType' object has no attribute 'writelines'"),
    ConnectionResetError(104, "Connection reset by peer"),
    OSError(113, "No route to host"),
    TimeoutError(),
    asyncio.IncompleteReadError(b"", 10),
    KeyError("slots"),
    IndexError("list index out of range"),
    ValueError("bad reply"),
    RuntimeError("Event loop is closed"),
]
EXCEPTIONS = [_instance(cls) for cls in _redis_exception_classes()] + OTHERS


@pytest.mark.parametrize("exc", EXCEPTIONS, ids=lambda exc: type(exc).__name__)
async def test_every_exception_a_store_call_raises_is_the_stores_failure(exc: Exception) -> None:
    async def command() -> None:
        raise exc

    boundary = StoreBoundary(timeout=1.0)
    for idempotent in (False, True):
        with pytest.raises(SessionStoreUnavailable, match=f"Redis read failed: {type(exc).__name__}") as info:
            await boundary.run("read", command, idempotent=idempotent)
        assert info.value.__cause__ is exc


async def test_cancellation_is_not_translated() -> None:
    async def command() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await StoreBoundary(timeout=1.0).run("read", command, idempotent=True)


@pytest.mark.parametrize(
    "broken",
    [
        AttributeError("'NoneType' object has no attribute 'writelines'"),
        redis.exceptions.ConnectionError("Connection closed by server."),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=lambda exc: type(exc).__name__,
)
async def test_a_read_whose_connection_broke_is_tried_once_more_and_a_write_is_not(broken: Exception) -> None:
    calls: list[str] = []

    async def command() -> bytes:
        calls.append("call")
        if len(calls) == 1:
            raise broken
        return b"value"

    boundary = StoreBoundary(timeout=1.0)
    assert await boundary.run("read", command, idempotent=True) == b"value"
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(SessionStoreUnavailable):
        await boundary.run("write", command)
    assert len(calls) == 1


async def test_a_read_is_retried_only_once_and_not_after_a_timeout() -> None:
    calls: list[str] = []

    async def always_broken() -> None:
        calls.append("call")
        raise redis.exceptions.ConnectionError("Connection closed by server.")

    async def timed_out() -> None:
        calls.append("call")
        raise redis.exceptions.TimeoutError("Timeout reading from 127.0.0.1:7001")

    boundary = StoreBoundary(timeout=1.0)
    for command, expected_calls in ((always_broken, 2), (timed_out, 1)):
        calls.clear()
        with pytest.raises(SessionStoreUnavailable):
            await boundary.run("read", command, idempotent=True)
        assert len(calls) == expected_calls


async def test_every_operation_retries_included_ends_within_the_store_timeout() -> None:
    calls: list[str] = []

    async def breaks_then_hangs() -> None:
        calls.append("call")
        if len(calls) == 1:
            await asyncio.sleep(0.1)
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        await asyncio.sleep(60)

    started = time.monotonic()
    with pytest.raises(SessionStoreUnavailable, match="TimeoutError"):
        await StoreBoundary(timeout=0.3).run("read", breaks_then_hangs, idempotent=True)
    assert 0.3 <= time.monotonic() - started < 0.5
    assert len(calls) == 2


def test_failures_are_logged_without_flooding_and_unexpected_ones_with_their_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    failures = FailureLog(every=10.0, clock=lambda: now[0])
    expected = redis.exceptions.ConnectionError("Connection refused")
    unexpected = AttributeError("'NoneType' object has no attribute 'writelines'")
    assert isinstance(expected, EXPECTED_FAILURES) and not isinstance(unexpected, EXPECTED_FAILURES)
    with caplog.at_level(logging.WARNING, logger="broker.sessions.redis_errors"):
        assert failures.record("read", expected)
        assert failures.record("read", unexpected)  # its own budget: not hidden behind the expected ones
        assert not any(failures.record("read", expected) for _ in range(500))
        assert not failures.record("read", unexpected)
        now[0] += 10.0
        assert failures.record("write", expected)
    lines = [(r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert lines == [
        ("session store read failed: ConnectionError", False),
        ("session store read failed: AttributeError", True),
        ("session store write failed: ConnectionError (500 more not logged)", False),
    ]
    assert "Connection refused" not in caplog.text  # the type only: redis-py messages may echo keys

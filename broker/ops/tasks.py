"""The event loop, and stopping background tasks without trusting them to honour cancellation.

redis-py can swallow a ``CancelledError`` that arrives during a command (the task then goes on as if
nothing happened), so ``task.cancel(); await task`` may wait forever. Every background loop here also
checks a stop event, and stopping waits a bounded time.

Every long-running process (gateway workers, the dev IdP, the demo) runs on uvloop's loop when installed (a
dependency on Linux; several times faster socket I/O than asyncio's default loop), asyncio's otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

STOP_TIMEOUT = 2.0


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[object] | None], timeout: float = STOP_TIMEOUT
) -> None:
    """Cancel ``tasks`` and wait for them at most ``timeout`` seconds; stragglers are logged, not awaited."""
    pending = {task for task in tasks if task is not None and not task.done()}
    for task in pending:
        task.cancel()
    if not pending:
        return
    _, still_running = await asyncio.wait(pending, timeout=timeout)
    for task in still_running:
        log.warning("background task %s did not stop in time", task.get_name())
        task.cancel()


async def sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` or until ``stop`` is set; True when it is time to stop."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when available, asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()

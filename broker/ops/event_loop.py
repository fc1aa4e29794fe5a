"""The event loop every long-running broker process uses: uvloop's when installed (a dependency on Linux;
several times faster socket I/O than asyncio's default loop), asyncio's otherwise."""

from __future__ import annotations

import asyncio


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when available, asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()

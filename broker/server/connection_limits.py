"""Bounds on client connections that aiohttp does not give: a header-read timeout and a per-worker cap.

aiohttp already closes a connection that is idle between requests after ``keepalive_timeout`` (its timer
runs from the accept and from the end of each answer, and fires only while the connection waits for a
request head, so it also ends a kept-alive connection that trickles its next request head). What it does
not bound is the *first* request head of a new connection any tighter than that, nor how many
connections one worker holds. ``GuardedTCPSite`` listens with a protocol factory around aiohttp's own
(``runner.server``) that adds both, with public APIs only:

- **header timeout**: a connection whose first request line and headers are not complete
  ``header_timeout`` seconds after the accept is closed (slowloris: clients that trickle a byte every few
  seconds, or send nothing at all). The timer is disarmed when aiohttp hands the parsed head to the
  request factory, so the body of an upload, a long download and a WebSocket are never cut by it.
- **max_connections** per worker: at the cap, a new connection first closes the oldest connection that has
  not yet sent a complete request head (half-open or silent: the connections an attacker can open for
  free); when every open connection has had a request, the new connection is refused (closed at once),
  because closing an established one could cut an upload, a download or a WebSocket in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

# At most one "connection cap reached" line per this many seconds: an attacker must not flood the log.
CAP_LOG_INTERVAL = 10.0


@dataclass(frozen=True)
class ConnectionLimits:
    """The bounds one worker enforces on its client connections."""

    header_timeout: float
    max_connections: int


class _Refused(asyncio.Protocol):
    """Closes a connection the moment it is made: the worker is at its cap with no half-open one to drop."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.abort()  # RST, no bytes: the client (or its load balancer) retries elsewhere


class ConnectionGuard:
    """Times each new connection until its first request head, and keeps one worker under its cap."""

    def __init__(self, server: web.Server, limits: ConnectionLimits, loop: asyncio.AbstractEventLoop) -> None:
        self._server, self._limits, self._loop = server, limits, loop
        # Connections accepted whose first request head has not arrived yet, oldest first (dicts keep
        # insertion order). An entry lives at most header_timeout: the head or the timer removes it.
        self._awaiting_head: dict[web.RequestHandler, asyncio.TimerHandle] = {}
        self._last_cap_log = -CAP_LOG_INTERVAL
        self.refused = 0
        self.timed_out = 0
        self._watch_request_heads()

    def _watch_request_heads(self) -> None:
        """Wrap aiohttp's request factory (a public attribute of ``web.Server``; each handler reads it when
        it is created): it is called with the connection's handler as soon as a request head is parsed.

        Must run before the first connection: ``tests/security/test_slow_clients.py`` fails if an aiohttp
        upgrade stops calling it."""
        make_request = self._server.request_factory

        def request_factory(*args: Any, **kwargs: Any) -> web.BaseRequest:
            protocol = args[2] if len(args) > 2 else kwargs["protocol"]
            self._head_arrived(protocol)
            return make_request(*args, **kwargs)

        self._server.request_factory = request_factory

    def protocol_factory(self) -> Callable[[], asyncio.Protocol]:
        """The factory to give ``loop.create_server``: aiohttp's handler, timed, or a refusal at the cap."""

        def new_connection() -> asyncio.Protocol:
            if (
                len(self._server.connections) >= self._limits.max_connections
                and not self._drop_oldest_half_open()
            ):
                self.refused += 1
                self._log_cap()
                return _Refused()
            handler = self._server()
            self._awaiting_head[handler] = self._loop.call_later(
                self._limits.header_timeout, self._header_timeout, handler
            )
            return handler

        return new_connection

    def _head_arrived(self, handler: web.RequestHandler) -> None:
        timer = self._awaiting_head.pop(handler, None)
        if timer is not None:
            timer.cancel()

    def _header_timeout(self, handler: web.RequestHandler) -> None:
        if self._awaiting_head.pop(handler, None) is not None and handler.transport is not None:
            self.timed_out += 1
            handler.force_close()  # closes the transport; aiohttp's handler task ends with it

    def _drop_oldest_half_open(self) -> bool:
        while self._awaiting_head:
            handler, timer = next(iter(self._awaiting_head.items()))
            del self._awaiting_head[handler]
            timer.cancel()
            if handler.transport is not None:  # else the client left already: look further
                handler.force_close()
                return True
        return False

    def _log_cap(self) -> None:
        now = self._loop.time()
        if now - self._last_cap_log >= CAP_LOG_INTERVAL:
            self._last_cap_log = now
            log.warning(
                "connection cap reached: refusing new connections",
                extra={"max_connections": self._limits.max_connections, "refused": self.refused},
            )


class GuardedTCPSite(web.BaseSite):
    """A TCP site like aiohttp's ``TCPSite`` whose connections are bounded by a ``ConnectionGuard``.

    ``runner.cleanup()`` stops it first (``stop`` closes the listener), then lets in-flight requests finish:
    the graceful shutdown is the same as with ``TCPSite``."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        limits: ConnectionLimits,
        *,
        reuse_port: bool = False,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        server = runner.server
        assert server is not None  # BaseSite.__init__ refuses a runner that was not set up
        self._host, self._port, self._reuse_port, self._listen_backlog = host, port, reuse_port, backlog
        self.guard = ConnectionGuard(server, limits, asyncio.get_running_loop())
        self._listener: asyncio.Server | None = None

    @property
    def name(self) -> str:
        """``http://host:port``, as aiohttp's sites name themselves."""
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        """The bound port (useful when 0 was asked for)."""
        if self._listener is not None and self._listener.sockets:
            return int(self._listener.sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> None:
        """Listen, with the guard's protocol factory."""
        await super().start()
        self._listener = await asyncio.get_running_loop().create_server(
            self.guard.protocol_factory(),
            self._host,
            self._port,
            backlog=self._listen_backlog,
            reuse_address=True,
            reuse_port=self._reuse_port,
        )

    async def stop(self) -> None:
        """Stop accepting (the runner then shuts the connections down gracefully)."""
        if self._listener is not None:
            self._listener.close()
        await super().stop()

"""Pooled upstream connections: one pool per way of connecting (``proxy/upstream.PoolKey``).

The semantics are those of the aiohttp connector it replaces:

- ``limit`` connections in use at once (all destinations of the pool together); a request beyond it waits
  for one to come back, and that wait counts toward the connect timeout, as aiohttp's ``connect`` did;
- idle connections are kept per destination, newest first, and closed ``idle_timeout`` after their last use
  (a sweep closes them; one found expired when taken is closed instead of used);
- a connection the upstream closed while idle is never handed out (``UpstreamConnection.closed``).
"""

from __future__ import annotations

import asyncio
import collections
import ssl

from broker.errors import UpstreamTimeout, UpstreamTlsError, UpstreamUnreachable
from broker.proxy.http1.connection import Destination, UpstreamConnection


class ConnectionPool:
    """Connections to the destinations of one pool key (see the module's docstring)."""

    def __init__(self, limit: int, idle_timeout: float, ssl_context: ssl.SSLContext | None = None) -> None:
        self._limit = limit
        self._idle_timeout = idle_timeout
        self._ssl = ssl_context
        self._idle: dict[Destination, list[UpstreamConnection]] = {}
        self._in_use = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def in_use(self) -> int:
        """Connections handed out (or being opened) now."""
        return self._in_use

    def idle_count(self) -> int:
        """Idle connections kept now (for tests)."""
        return sum(len(conns) for conns in self._idle.values())

    async def acquire(self, destination: Destination, connect_timeout: float) -> UpstreamConnection:
        """A connection to ``destination``: an idle one, or a new one within ``connect_timeout`` (which
        includes the wait for a free slot)."""
        if self._in_use < self._limit and not self._waiters:
            conn = self._take_idle(destination)
            if conn is not None:
                self._in_use += 1
                return conn
        try:
            async with asyncio.timeout(connect_timeout or None):
                await self._slot()
                try:
                    conn = self._take_idle(destination)
                    if conn is None:
                        conn = await self._connect(destination)
                except BaseException:
                    self._give_back_slot()
                    raise
        except TimeoutError:
            raise UpstreamTimeout(f"no connection to {destination} within {connect_timeout:g} s") from None
        return conn

    def release(self, conn: UpstreamConnection, reusable: bool) -> None:
        """Give ``conn`` back: kept idle when ``reusable``, closed otherwise."""
        self._give_back_slot()
        if not reusable or self._closed or conn.closed:
            conn.close()
            return
        loop = asyncio.get_running_loop()
        conn.reused = True
        conn.idle_since = loop.time()
        destination = conn.destination
        self._idle.setdefault(destination, []).append(conn)
        if self._sweep is None and self._idle_timeout:
            self._sweep = loop.call_at(conn.idle_since + self._idle_timeout, self._close_expired)

    async def close(self) -> None:
        """Close every idle connection; connections in use close when they come back."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    def _take_idle(self, destination: Destination) -> UpstreamConnection | None:
        conns = self._idle.get(destination)
        if not conns:
            return None
        expired = asyncio.get_running_loop().time() - self._idle_timeout
        while conns:
            conn = conns.pop()
            if not conn.closed and (not self._idle_timeout or conn.idle_since > expired):
                return conn
            conn.close()
        return None

    async def _slot(self) -> None:
        """Wait until fewer than ``limit`` connections are in use, then take one slot (first come, first
        served: a woken waiter that was cancelled passes its turn on)."""
        while self._in_use >= self._limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake_next()
                raise
        self._in_use += 1

    def _give_back_slot(self) -> None:
        self._in_use -= 1
        self._wake_next()

    def _wake_next(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(self, destination: Destination) -> UpstreamConnection:
        """Open a new connection; refusals, DNS and TLS failures translated where they enter."""
        loop = asyncio.get_running_loop()
        try:
            if destination.unix_socket is not None:
                _, conn = await loop.create_unix_connection(
                    lambda: UpstreamConnection(loop, destination), destination.unix_socket
                )
            else:
                context = self._ssl if destination.tls else None
                if destination.tls and context is None:
                    context = ssl.create_default_context()
                _, conn = await loop.create_connection(
                    lambda: UpstreamConnection(loop, destination),
                    destination.host,
                    destination.port,
                    ssl=context,
                    server_hostname=destination.host if context is not None else None,
                )
        except ssl.SSLError as exc:  # also certificate verification (ssl.CertificateError)
            raise UpstreamTlsError(f"TLS with {destination} failed: {exc}") from exc
        except TimeoutError:
            raise
        except OSError as exc:  # refused, reset, unreachable, DNS (socket.gaierror)
            raise UpstreamUnreachable(f"cannot connect to {destination}: {exc}", connecting=True) from exc
        return conn

    def _close_expired(self) -> None:
        """Close the connections idle for ``idle_timeout``; come back for the next to expire."""
        self._sweep = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        oldest: float | None = None
        for destination, conns in list(self._idle.items()):
            kept = [c for c in conns if not c.closed and now - c.idle_since < self._idle_timeout]
            for conn in conns:
                if conn not in kept:
                    conn.close()
            if kept:
                self._idle[destination] = kept
                first = min(c.idle_since for c in kept)
                oldest = first if oldest is None else min(oldest, first)
            else:
                del self._idle[destination]
        if oldest is not None:
            self._sweep = loop.call_at(oldest + self._idle_timeout, self._close_expired)

"""One upstream HTTP/1.1 connection: an asyncio ``Protocol`` whose answers llhttp parses (``httptools``).

A connection carries one exchange at a time (no pipelining). Each answer gets a fresh parser, so nothing
of one answer's parse can leak into the next; interim 1xx answers before it are skipped. What llhttp
cannot know is handled here:

- HEAD: llhttp cannot be told the request was HEAD, so the answer ends at its head, whatever length it
  declares; any byte after it puts the connection in doubt, and it is not reused.
- The head is bounded (``HEAD_LIMIT`` bytes, ``HEAD_LINES`` lines; llhttp has no limit in httptools), and
  so are trailers (counted from the first read after the last body byte, so they may take one read more):
  a head that grows past it is an ``UpstreamProtocolError``, never unbounded memory.
- A body without ``Content-Length`` that is not chunked ends when the upstream closes; a body cut short of
  its length, or a chunked one without its last chunk, is a failure mid-answer.
- Backpressure: past ``HIGH_WATER`` unread body bytes the transport stops reading until the reader caught up.
- The read timeout is per read: each wait for the upstream's bytes may last ``read_timeout``, measured from
  the last bytes received (not from the wait's start), as aiohttp's ``sock_read`` is.

Bytes arriving while no exchange is in progress (an idle pooled connection) mean the connection's state is
in doubt: it is closed. So is a connection the upstream closed while idle (the pool skips it).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpResponseParser
from multidict import CIMultiDict

from broker.errors import UpstreamError, UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable

HEAD_LIMIT = 64 * 1024  # bytes of an answer's head (status line, headers), and of its trailers
HEAD_LINES = 256  # header lines of one answer
HIGH_WATER = 256 * 1024  # unread body bytes before the upstream's transport stops reading


@dataclass(frozen=True)
class Destination:
    """Where a connection goes: a TCP host and port (TLS or not), or a unix socket (``unix_socket``)."""

    host: str
    port: int
    tls: bool = False
    unix_socket: str | None = None

    def __str__(self) -> str:
        return f"unix:{self.unix_socket}" if self.unix_socket else f"{self.host}:{self.port}"


class Answer:
    """The head of an upstream's answer, and its body as the reader takes it (``read``, ``next_chunk``)."""

    __slots__ = ("_conn", "content_length", "headers", "reason", "status", "version")

    def __init__(
        self,
        conn: UpstreamConnection,
        status: int,
        reason: str,
        version: str,
        headers: CIMultiDict[str],
        content_length: int | None,
    ) -> None:
        self._conn = conn
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.content_length = content_length

    async def read(self) -> bytes:
        """The whole body (for answers known to be small)."""
        return await self._conn.read_all()

    async def next_chunk(self) -> bytes | None:
        """The body bytes received since the last call; None at the body's end."""
        return await self._conn.next_chunk()

    def fail(self, exc: BaseException) -> None:
        """End the answer with ``exc`` (the request side failed): readers get it; the connection closes.
        Nothing once the connection carries another exchange."""
        if self._conn.answer is self:
            self._conn.fail(exc)


class UpstreamConnection(asyncio.Protocol):
    """The protocol of one pooled connection (see the module's docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, destination: Destination) -> None:
        self._loop = loop
        self.destination = destination
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False  # it has carried an exchange before this one
        self.idle_since = 0.0
        self.answer_bytes = 0  # bytes received for the current exchange (none: a retry is safe)
        self._parser: HttpResponseParser | None = None
        self._head_only = False
        self._read_timeout = 0.0
        self._last_read = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        self._reading_paused = False
        self._error: BaseException | None = None
        self._reset_answer()

    def _reset_answer(self) -> None:
        self.answer: Answer | None = None
        self.complete = False  # the answer was read to its end
        self.doubtful = False  # bytes arrived that no answer explains
        self._keep_alive = False
        self._until_close = False
        self._reason: list[bytes] = []
        self._raw: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._unframed = 0  # bytes received since the last body byte: heads and trailers
        self._chunks: list[bytes] = []
        self._buffered = 0

    # The exchange's side.

    def begin(self, read_timeout: float, *, head_only: bool) -> None:
        """Expect a new answer (a fresh parser); ``head_only``: the request was HEAD."""
        self._reset_answer()
        self._error = None
        self.answer_bytes = 0
        self._head_only = head_only
        self._read_timeout = read_timeout
        self._last_read = self._loop.time()
        self._parser = HttpResponseParser(self)
        if self.closed:
            self._error = UpstreamUnreachable("the upstream had closed the connection")

    def write(self, data: bytes) -> None:
        """Send bytes (dropped once the connection is closed: the answer side reports why)."""
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def writelines(self, parts: list[bytes]) -> None:
        """Send several buffers at once."""
        if not self.closed and self.transport is not None:
            self.transport.writelines(parts)

    async def drain(self) -> None:
        """Wait while the transport's write buffer is over its high-water mark."""
        if self._write_paused and not self.closed:
            self._drain = self._loop.create_future()
            await self._drain

    async def head(self) -> Answer:
        """The answer's head, once it has arrived (interim 1xx answers skipped)."""
        while True:
            if self._error is not None:
                raise self._error
            if self.answer is not None:
                return self.answer
            await self._wait()

    async def read_all(self) -> bytes:
        """Every body byte, once the body has ended."""
        while not self.complete:
            if self._error is not None:
                raise self._error
            await self._wait()
        if self._error is not None:
            raise self._error
        chunks, self._chunks, self._buffered = self._chunks, [], 0
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def next_chunk(self) -> bytes | None:
        """The body bytes buffered so far (waiting for some); None once the body has ended."""
        while True:
            if self._error is not None:
                raise self._error
            if self._chunks:
                chunks, self._chunks, self._buffered = self._chunks, [], 0
                if self._reading_paused and self.transport is not None and not self.closed:
                    self._reading_paused = False
                    self.transport.resume_reading()
                    self._last_read = self._loop.time()
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if self.complete:
                return None
            await self._wait()

    @property
    def reusable(self) -> bool:
        """The answer ended cleanly and both sides keep the connection alive."""
        return self.complete and self._keep_alive and not self.doubtful and not self.closed

    def fail(self, exc: BaseException) -> None:
        """End the exchange with ``exc`` and close the connection (its state is unknown)."""
        if self._error is None:
            self._error = exc
        self._chunks, self._buffered = [], 0
        self.close()
        self._wake()

    def close(self) -> None:
        """Drop the connection at once."""
        self.closed = True
        self._parser = None
        if self.transport is not None:
            self.transport.abort()

    async def _wait(self) -> None:
        """Wait for the next bytes (or the end); at most ``read_timeout`` after the last ones arrived."""
        waiter = self._waiter = self._loop.create_future()
        timer = None
        if self._read_timeout:
            timer = self._loop.call_at(self._last_read + self._read_timeout, self._check_timeout, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _check_timeout(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():
            return
        due = self._last_read + self._read_timeout
        if self._loop.time() < due:  # bytes came meanwhile: wait from them
            self._loop.call_at(due, self._check_timeout, waiter)
            return
        self.fail(UpstreamTimeout(f"no answer from the upstream within {self._read_timeout:g} s"))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # The transport's side.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not ``asyncio.Transport`` instances, but behave as one).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            # Nothing was asked (idle), or the answer had ended: no answer explains these bytes.
            self.doubtful = True
            self.close()
            return
        self._last_read = self._loop.time()
        self.answer_bytes += len(data)
        self._unframed += len(data)
        try:
            parser.feed_data(data)
        except HttpParserUpgrade:
            self.fail(UpstreamProtocolError("the upstream switched protocols unasked"))
        except HttpParserCallbackError as exc:
            cause = exc.__context__
            self.fail(cause if isinstance(cause, UpstreamError) else UpstreamProtocolError(str(exc)))
        except HttpParserError as exc:
            self.fail(UpstreamProtocolError(f"the upstream's answer cannot be parsed: {exc}"))
        else:
            if self._unframed > HEAD_LIMIT and not self.complete:
                self.fail(UpstreamProtocolError(f"the upstream's head or trailers passed {HEAD_LIMIT} bytes"))
        self._wake()

    def eof_received(self) -> bool | None:
        return None  # close: connection_lost decides what the end means

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._parser is not None and not self.complete and self._error is None:
            if self.answer is not None and self._until_close:
                self._finish()  # a body without length ends when the upstream closes
            else:
                self._error = UpstreamUnreachable(
                    "the upstream closed the connection before its answer ended"
                    + (f": {exc}" if exc is not None else "")
                )
        self._parser = None
        self._wake()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # llhttp's callbacks (httptools calls these by name while ``feed_data`` runs).

    def on_message_begin(self) -> None:
        if self.complete:
            self.doubtful = True  # a second answer to one request

    def on_status(self, status: bytes) -> None:
        self._reason.append(status)

    def on_header(self, name: bytes, value: bytes) -> None:
        # Counted here, judged once the head is complete: within one read the list is bounded by the
        # read, and across reads ``data_received`` bounds the bytes. Trailers are not kept.
        if self.answer is None:
            self._raw.append((name, value))
            self._head_size += len(name) + len(value)

    def on_headers_complete(self) -> None:
        parser = self._parser
        if parser is None or self.complete:
            self.doubtful = True
            return
        if len(self._raw) > HEAD_LINES or self._head_size > HEAD_LIMIT:
            raise UpstreamProtocolError(
                f"the upstream's head passed {HEAD_LINES} lines or {HEAD_LIMIT} bytes"
            )
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # An interim answer (100, 103): skipped, not relayed (its bytes still count toward the bound).
            self._reason, self._raw = [], []
            return
        headers: CIMultiDict[str] = CIMultiDict(
            [
                (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
                for name, value in self._raw
            ]
        )
        self._raw = []
        version = parser.get_http_version()
        length_text = headers.get("Content-Length")
        length = int(length_text) if length_text is not None else None
        chunked = False
        if "Transfer-Encoding" in headers:
            last = headers.getall("Transfer-Encoding")[-1].rsplit(",", 1)[-1]
            chunked = last.strip().lower() == "chunked"
        connection = headers.get("Connection")
        tokens = {t.strip().lower() for t in connection.split(",")} if connection is not None else set()
        self._keep_alive = "close" not in tokens if version == "1.1" else "keep-alive" in tokens
        self._until_close = length is None and not chunked
        reason = b"".join(self._reason).decode("utf-8", "surrogateescape")
        if len(reason) > HEAD_LIMIT:
            raise UpstreamProtocolError(f"the upstream's status line passed {HEAD_LIMIT} bytes")
        self.answer = Answer(self, status, reason, version, headers, length)
        if self._head_only or status in (204, 304):
            self._finish()  # no body, whatever the head declares

    def on_body(self, body: bytes) -> None:
        if self.complete:
            self.doubtful = True
            return
        self._unframed = 0
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.answer is not None and not self.complete:
            self._finish()

    def _finish(self) -> None:
        self.complete = True
        self._parser = None  # a fresh parser for the next answer; later bytes are in doubt

"""One request upstream over a pooled connection: ``async with client.request(...) as answer``.

The request's head is built and checked (``wire.request_head``) before a connection is taken; its body, if
any, is sent by a task of its own while the answer is awaited, so an upstream that answers before it has
read the body (or never reads it) is served as it arrives. The body goes with the ``Content-Length`` the
client declared, or chunked; the transport is drained between chunks, so a large upload never sits in the
gateway's memory.

The connection goes back to the pool only when the answer was read to its end, the body was sent whole and
both sides keep the connection alive; otherwise it is closed.

The keep-alive race: an upstream may close an idle connection just as a request is written to it. A request
on a *reused* connection that fails before any byte of the answer arrived is therefore retried once on a
new connection, when that cannot repeat anything the upstream may have acted on: the request has no body,
or its method is idempotent and no body byte was taken from the client yet (the body is sent as it is
read, so in practice: requests without a body).

Tracing (when on): the upstream call is a CLIENT span, and the upstream gets its W3C ``traceparent``
(``ops/tracing.client_span``); with tracing off nothing is made or added.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType

from multidict import CIMultiDict
from yarl import URL

from broker.errors import RequestBodyTooLarge, UpstreamError, UpstreamUnreachable
from broker.ops.tracing import client_span, end_client_span
from broker.proxy.http1.connection import Answer, Destination, UpstreamConnection
from broker.proxy.http1.pool import ConnectionPool
from broker.proxy.http1.wire import LAST_CHUNK, chunk_size_line, request_head

# Methods whose repetition the upstream must treat as one request (RFC 9110 section 9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})


@dataclass(frozen=True)
class Timeouts:
    """A route's limits: connect (with the wait for a pooled connection) and each read; 0 = none."""

    connect: float
    read: float


class Exchange:
    """One request and its answer (an async context manager; see the module's docstring)."""

    __slots__ = (
        "_body",
        "_body_sent",
        "_body_started",
        "_chunked",
        "_conn",
        "_destination",
        "_headers",
        "_host",
        "_method",
        "_pool",
        "_sender",
        "_timeouts",
        "_url",
    )

    def __init__(
        self,
        pool: ConnectionPool,
        destination: Destination,
        method: str,
        url: URL,
        host: str,
        headers: CIMultiDict[str],
        body: AsyncIterator[bytes] | None,
        timeouts: Timeouts,
    ) -> None:
        self._pool = pool
        self._destination = destination
        self._method = method
        self._url = url
        self._host = host
        self._headers = headers
        self._body = body
        self._timeouts = timeouts
        self._conn: UpstreamConnection | None = None
        self._sender: asyncio.Task[None] | None = None
        self._body_started = False
        self._body_sent = body is None
        self._chunked = False

    async def __aenter__(self) -> Answer:
        span = client_span(self._method, self._url, self._headers)
        try:
            length = "Content-Length" in self._headers
            self._chunked = self._body is not None and not length
            head = request_head(
                self._method,
                self._url.raw_path_qs,
                None if "Host" in self._headers else self._host,
                self._headers.items(),
                chunked=self._chunked,
                length=length,
            )
            answer = await self._answer(head)
        except BaseException as exc:
            end_client_span(span, None, exc)
            raise
        end_client_span(span, answer.status, None)
        return answer

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._drop(keep=True)

    async def _answer(self, head: bytes) -> Answer:
        """Send the request and wait for the answer's head; once more on a new connection if a reused one
        turns out to have been closed by the upstream (the keep-alive race)."""
        retried = False
        while True:
            conn = self._conn = await self._pool.acquire(self._destination, self._timeouts.connect)
            conn.begin(self._timeouts.read, head_only=self._method == "HEAD")
            conn.write(head)
            if self._body is not None:
                self._sender = asyncio.create_task(self._send(conn, self._body))
            try:
                return await conn.head()
            except UpstreamError as exc:
                self._drop(keep=False)
                if retried or not self._may_retry(conn, exc):
                    raise
                retried = True
            except BaseException:
                self._drop(keep=False)
                raise

    def _may_retry(self, conn: UpstreamConnection, exc: UpstreamError) -> bool:
        return (
            conn.reused
            and conn.answer_bytes == 0
            and type(exc) is UpstreamUnreachable
            and (self._body is None or (self._method in IDEMPOTENT and not self._body_started))
        )

    def _drop(self, *, keep: bool) -> None:
        """Stop sending and give the connection back (kept only if ``keep`` and it is reusable)."""
        sender, self._sender = self._sender, None
        if sender is not None and not sender.done():
            sender.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.release(conn, keep and self._body_sent and conn.reusable)

    async def _send(self, conn: UpstreamConnection, body: AsyncIterator[bytes]) -> None:
        """Send the body as it is read, draining the transport between chunks; a failure of the body
        (too large, the client gone) ends the exchange with it."""
        self._body_started = True
        chunked = self._chunked
        try:
            async for chunk in body:
                if conn.closed:
                    return  # the upstream went away: the answer's side says how
                if not chunk:
                    continue  # an empty chunk would end a chunked body
                if chunked:
                    conn.writelines([chunk_size_line(len(chunk)), chunk, b"\r\n"])
                else:
                    conn.write(chunk)
                await conn.drain()
            if chunked:
                conn.write(LAST_CHUNK)
            self._body_sent = not conn.closed
        except RequestBodyTooLarge as exc:
            conn.fail(exc)
        except Exception as exc:  # noqa: BLE001 - a task of its own: whatever ends the body ends the exchange
            # The client's body failed (it went away, or sent less than it declared).
            conn.fail(UpstreamUnreachable(f"the request body could not be read: {type(exc).__name__}"))


class HttpClient:
    """Requests over one pool of connections."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def request(
        self,
        destination: Destination,
        method: str,
        url: URL,
        host: str,
        headers: CIMultiDict[str],
        body: AsyncIterator[bytes] | None,
        timeouts: Timeouts,
    ) -> Exchange:
        """``async with client.request(...) as answer``: the answer's head, its body read from it."""
        return Exchange(self.pool, destination, method, url, host, headers, body, timeouts)

    async def close(self) -> None:
        """Close the pool's idle connections."""
        await self.pool.close()

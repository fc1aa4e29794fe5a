"""A scripted upstream for the HTTP/1.1 client's tests: real TCP on loopback (bound by the OS at port 0),
each connection served by a test's own coroutine so that it can answer exactly the bytes under test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from multidict import CIMultiDict
from yarl import URL

from broker.proxy.http1.client import HttpClient, Timeouts
from broker.proxy.http1.connection import Answer, Destination
from broker.proxy.http1.pool import ConnectionPool

Script = Callable[["Peer"], Awaitable[None]]
TIMEOUTS = Timeouts(connect=2.0, read=2.0)


@dataclass
class Peer:
    """One accepted connection: read requests from it, write answers to it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    number: int

    async def request(self) -> bytes:
        """The next request's head (and nothing of its body); b"" when the client closed."""
        try:
            return await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


@dataclass
class ScriptedUpstream:
    """A loopback server running ``script`` on each connection; it counts connections and heads."""

    script: Script
    port: int = 0
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        peer = Peer(reader, writer, self.connections)
        try:
            await self.script(peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.closed.set()

    def url(self, path: str = "/") -> URL:
        return URL(f"http://127.0.0.1:{self.port}{path}")

    @property
    def destination(self) -> Destination:
        return Destination("127.0.0.1", self.port)


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Script], Awaitable[ScriptedUpstream]]]:
    """Start scripted upstreams (as many as a test wants); all stop at the end."""
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> ScriptedUpstream:
        upstream = ScriptedUpstream(script)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await upstream.serve(reader, writer)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        upstream.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return upstream

    yield start
    for server in servers:
        server.close()


def client(limit: int = 8, idle_timeout: float = 5.0) -> HttpClient:
    """A client over a pool of its own."""
    return HttpClient(ConnectionPool(limit, idle_timeout))


async def fetch(
    http: HttpClient,
    upstream: ScriptedUpstream,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: AsyncIterator[bytes] | None = None,
    timeouts: Timeouts = TIMEOUTS,
) -> tuple[Answer, bytes]:
    """One request; the answer's head and its whole body (read chunk by chunk)."""
    async with http.request(
        upstream.destination,
        method,
        upstream.url("/x"),
        f"127.0.0.1:{upstream.port}",
        CIMultiDict(headers or {}),
        body,
        timeouts,
    ) as answer:
        chunks = []
        while (chunk := await answer.next_chunk()) is not None:
            chunks.append(chunk)
        return answer, b"".join(chunks)


def answer(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    """A keep-alive 200 with a Content-Length."""
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)

"""CPU per request of the upstream client alone: aiohttp's ``ClientSession.request`` vs ``proxy/http1``.

    PYTHONPATH=. .venv/bin/python bench/upstream_client.py [--requests 20000] [--rounds 2]

A forked process serves a fixed nginx-like answer (78-byte body, nine headers) on a loopback port the OS
picks; this process sends GETs with the headers a proxied request carries (forwarding, request id, a
600-byte assertion), 8 at a time over keep-alive connections, each client as ``forward`` uses it, and
prints the process CPU time per request (the event loop, the client, the syscalls), in alternation.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable

import aiohttp
import uvloop
from multidict import CIMultiDict
from yarl import URL

from broker.proxy.http1.client import HttpClient, Timeouts
from broker.proxy.http1.connection import Destination
from broker.proxy.http1.pool import ConnectionPool

BODY = b"<html>" + b"x" * 72
ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 17:00:00 GMT\r\n"
    b"Content-Type: text/html\r\nContent-Length: %d\r\nLast-Modified: Tue, 01 Dec 2026 16:00:00 GMT\r\n"
    b'Connection: keep-alive\r\nETag: "abc-4e"\r\nAccept-Ranges: bytes\r\n\r\n' % len(BODY)
) + BODY
HEADERS = [
    ("Accept", "*/*"),
    ("User-Agent", "wrk"),
    ("X-Forwarded-For", "127.0.0.1"),
    ("X-Forwarded-Proto", "http"),
    ("X-Forwarded-Host", "localhost:8080"),
    ("Forwarded", 'for=127.0.0.1;host="localhost:8080";proto=http'),
    ("X-Request-Id", "abcdef0123456789abcdef01"),
    ("X-Broker-Assertion", "e" * 600),
    ("X-Remote-User", "adele@contoso.com"),
]
CONCURRENCY = 8


def serve(port_pipe: int) -> None:
    """The upstream: the same answer to every request head, on every connection."""

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                writer.write(ANSWER)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        os.write(port_pipe, str(server.sockets[0].getsockname()[1]).encode())
        os.close(port_pipe)
        await asyncio.sleep(3600)

    uvloop.run(main())


async def measure(one: Callable[[], Awaitable[bytes]], requests: int) -> float:
    """µs of this process's CPU per request, after a warm-up."""
    for _ in range(500):
        await one()
    start = time.process_time()

    async def worker() -> None:
        for _ in range(requests // CONCURRENCY):
            await one()

    await asyncio.gather(*[worker() for _ in range(CONCURRENCY)])
    return (time.process_time() - start) / requests * 1e6


async def with_aiohttp(port: int, requests: int) -> float:
    url = URL(f"http://127.0.0.1:{port}/")
    timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_connect=5, sock_read=60)
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
        connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
    ) as session:

        async def one() -> bytes:
            async with session.request(
                "GET", url, headers=CIMultiDict(HEADERS), allow_redirects=False, timeout=timeout
            ) as answer:
                return await answer.read()

        return await measure(one, requests)


async def with_http1(port: int, requests: int) -> float:
    url = URL(f"http://127.0.0.1:{port}/")
    client = HttpClient(ConnectionPool(256, 30.0))
    destination, timeouts = Destination("127.0.0.1", port), Timeouts(5.0, 60.0)

    async def one() -> bytes:
        async with client.request(
            destination, "GET", url, f"127.0.0.1:{port}", CIMultiDict(HEADERS), None, timeouts
        ) as answer:
            return await answer.read()

    try:
        return await measure(one, requests)
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        serve(write_end)
        os._exit(0)
    os.close(write_end)
    port = int(os.read(read_end, 10))
    try:
        for _ in range(args.rounds):
            for name, run in (("aiohttp ClientSession", with_aiohttp), ("proxy/http1", with_http1)):
                print(f"{name:22} {uvloop.run(run(port, args.requests)):6.1f} us CPU per request")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()

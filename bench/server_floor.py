"""The floor of the server side: what one request costs each way of serving HTTP/1.1 in Python, before any
of the gateway's own work (issue 19: where the remaining CPU per request is).

    .venv/bin/python bench/server_floor.py                  # 5 s per server, 2 rounds, wrk -t1 -c32
    .venv/bin/python bench/server_floor.py --seconds 10 --rounds 3

Each server answers every request with the same 72-byte page, on uvloop, in a process of its own (bound to
an ephemeral loopback port it reports itself; nothing is probed and re-bound):

- ``application``: an aiohttp ``web.Application`` with one catch-all route and one middleware, as the
  gateway was built until ``dd51d23``;
- ``application-bare``: the same without the middleware, as the gateway is built now (its request stages
  wrap each handler instead);
- ``low-level``: aiohttp's ``web.Server`` (no router, no middleware);
- ``httptools+aiohttp-objects``: a protocol of its own on httptools that still builds aiohttp's
  ``BaseRequest`` and writes aiohttp's ``Response`` (what a server of our own under the same handlers would
  keep);
- ``httptools``: a protocol on httptools that writes the answer's bytes itself (the floor: parse and send).

It prints requests per second and the server's CPU per request (user + system, from /proc), in alternation.
Needs ``wrk`` (apt-get install wrk). Loopback only; every server is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys

BODY = b"x" * 72
KINDS = ("application", "application-bare", "low-level", "httptools+aiohttp-objects", "httptools")


def serve(kind: str) -> None:
    """Run one server kind forever; print its port once it listens."""
    import httptools
    import uvloop
    from aiohttp import HttpVersion11, web
    from aiohttp.base_protocol import BaseProtocol
    from aiohttp.http_parser import RawRequestMessage
    from aiohttp.http_writer import StreamWriter
    from aiohttp.streams import EMPTY_PAYLOAD
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    async def page(request: web.BaseRequest) -> web.Response:
        return web.Response(body=BODY, content_type="text/html")

    @web.middleware
    async def middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
        return await handler(request)

    class Raw(asyncio.Protocol):
        def connection_made(self, transport):  # type: ignore[no-untyped-def]
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 72\r\n\r\n" + BODY
            )

    class WithAiohttpObjects(BaseProtocol):
        ssl_context = None
        peername = None
        sockname = None

        def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
            super().__init__(loop)
            self.parser = httptools.HttpRequestParser(self)
            self.headers: list[tuple[str, str]] = []
            self.url = b""

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_url(self, url: bytes) -> None:
            self.url = url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

        def on_message_complete(self) -> None:
            headers, self.headers = CIMultiDictProxy(CIMultiDict(self.headers)), []
            path = self.url.decode()
            message = RawRequestMessage(
                self.parser.get_method().decode(),
                path,
                HttpVersion11,
                headers,
                (),
                False,
                None,
                False,
                False,
                URL.build(path=path, encoded=True),
            )
            writer = StreamWriter(self, self._loop)
            request = web.BaseRequest(message, EMPTY_PAYLOAD, self, writer, None, self._loop)  # type: ignore[arg-type]
            self._loop.create_task(self.answer(request))

        async def answer(self, request: web.BaseRequest) -> None:
            response = await page(request)
            await response.prepare(request)
            await response.write_eof()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if kind.startswith("application"):
            app = web.Application(middlewares=[middleware] if kind == "application" else [])
            app.router.add_route("*", "/{tail:.*}", page)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
        else:
            factories = {
                "low-level": web.Server(page, access_log=None),
                "httptools+aiohttp-objects": lambda: WithAiohttpObjects(loop),
                "httptools": Raw,
            }
            server = await loop.create_server(factories[kind], "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` in clock ticks (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def measure(kind: str, seconds: int) -> tuple[float, float]:
    """(requests per second, server CPU microseconds per request) of one kind under wrk."""
    server = subprocess.Popen([sys.executable, __file__, "--serve", kind], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        before = cpu_ticks(server.pid)
        out = subprocess.run(
            ["wrk", "-t1", "-c32", f"-d{seconds}s", f"http://127.0.0.1:{port}/x"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        used = (cpu_ticks(server.pid) - before) / os.sysconf("SC_CLK_TCK")
    finally:
        server.kill()
        server.wait()
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    return requests / seconds, used / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    print(
        f"wrk -t1 -c32 -d{args.seconds}s, one server process on uvloop, a 72-byte page; {args.rounds} rounds"
    )
    print(f"{'server':28} {'round':>5} {'req/s':>9} {'CPU us/req':>11}")
    for round_ in range(1, args.rounds + 1):
        for kind in KINDS:
            rps, cpu = measure(kind, args.seconds)
            print(f"{kind:28} {round_:>5} {rps:>9.0f} {cpu:>11.1f}")


if __name__ == "__main__":
    main()

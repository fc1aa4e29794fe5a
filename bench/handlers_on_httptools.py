"""Issue 19's measured alternative: the gateway's own handlers and request stages, unchanged, served by
aiohttp (as the gateway is) and by a protocol on httptools that hands them a small stand-in for aiohttp's
request and writes their answer's bytes itself: what a server of our own under unchanged handlers would save.

    .venv/bin/python bench/handlers_on_httptools.py --config broker.yaml     # prints both ports, then serves

Two handlers are served on the httptools port: ``/.auth/verify`` (forward-auth) and, for every other path, the
proxy (``handlers/protected.py``: route, session, policy, the upstream request, the answer read whole).

Run by ``bench/handlers_on_httptools.sh``, which starts Redis, nginx, the dev IdP and a gateway with this
config, logs in for a session cookie and times both ports in alternation. Both servers live in this one
process around one gateway (one config, one Redis connection pool, one session cache, one upstream pool), so
the process's CPU time over a wrk run belongs to the server that run hit.

A prototype for a measurement, never the product: it reads only what a hot, bodiless GET reads, answers one
request at a time per connection (no pipelining), and has none of the gateway's bounds on slow or abusive
clients.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httptools  # type: ignore[import-untyped]
import uvloop
from aiohttp import HttpVersion11, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from broker.app import create_app
from broker.config.load import load_config
from broker.handlers.protected import handle as protected
from broker.handlers.verify import verify
from broker.http import paths
from broker.middleware import request_middleware, staged
from broker.server.serve import serve_guarded

# Written by ``_answer`` itself, whatever the handler's answer carries.
_WRITTEN_HERE = frozenset({"content-length", "date", "server", "transfer-encoding", "connection"})


class StandIn:
    """What the request stages and the two handlers read of aiohttp's request for a bodiless GET."""

    version = HttpVersion11
    prepared = False
    body_exists = False  # only bodiless requests are measured
    content = None
    content_length = None

    def __init__(
        self,
        app: web.Application,
        method: str,
        target: str,
        headers: CIMultiDictProxy[str],
        peer: str,
        transport: asyncio.Transport,
    ):
        self.app = app
        self.method = method
        self.rel_url = URL(target, encoded=True)
        self.raw_path = target
        self.headers = headers
        self.remote = peer
        self.host = headers.get("Host", "")
        self.transport = transport
        self._state: dict[Any, Any] = {}

    @property
    def query(self) -> Any:
        return self.rel_url.query

    def __getitem__(self, key: Any) -> Any:
        return self._state[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._state[key] = value

    def __contains__(self, key: Any) -> bool:
        return key in self._state

    def get(self, key: Any, default: Any = None) -> Any:
        return self._state.get(key, default)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._state)


class HandlersProtocol(asyncio.Protocol):
    """One connection: parsed by httptools, answered by the stages and a handler, one request at a time."""

    def __init__(self, app: web.Application, handlers: tuple[Any, Any], date: list[bytes]) -> None:
        self._app = app
        self._verify, self._proxy = handlers
        self._date = date
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._peer = ""
        self._url = b""
        self._headers: list[tuple[str, str]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass of asyncio's
        self._peer = transport.get_extra_info("peername")[0]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            assert self._transport is not None
            self._transport.close()

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_message_complete(self) -> None:
        assert self._transport is not None
        self._transport.pause_reading()
        method = self._parser.get_method().decode("ascii")
        target = self._url.decode("latin-1")
        headers = CIMultiDictProxy(CIMultiDict(self._headers))
        request = StandIn(self._app, method, target, headers, self._peer, self._transport)
        handler = self._verify if target.startswith(paths.VERIFY) else self._proxy
        asyncio.get_running_loop().create_task(self._answer(handler, request))

    async def _answer(self, handler: Any, request: StandIn) -> None:
        response = await handler(request)
        body = response.body if isinstance(response.body, bytes) else b""
        lines = [f"HTTP/1.1 {response.status} {response.reason}\r\n".encode("latin-1")]
        for name, value in response.headers.items():
            if name.lower() not in _WRITTEN_HERE:
                lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        lines.append(b"Content-Length: %d\r\nDate: %s\r\nServer: bench\r\n\r\n" % (len(body), self._date[0]))
        lines.append(body)
        assert self._transport is not None
        if not self._transport.is_closing():
            self._transport.write(b"".join(lines))
            self._transport.resume_reading()


async def serve(config_path: Path) -> None:
    config = load_config(config_path)
    app = create_app(config, config_path.parent)
    runner, site = await serve_guarded(app, config, "127.0.0.1", 0)
    aiohttp_port = site.port
    # The same stages around the same handlers as ``app.add_routes`` puts on verify and on the catch-all.
    stages = request_middleware(None)
    handlers = (staged(stages, verify), staged(stages, protected))
    date = [email.utils.formatdate(usegmt=True).encode("ascii")]

    async def tick() -> None:
        while True:
            await asyncio.sleep(1.0 - time.time() % 1.0)
            date[0] = email.utils.formatdate(usegmt=True).encode("ascii")

    ticker = asyncio.create_task(tick())
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HandlersProtocol(app, handlers, date), "127.0.0.1", 0)
    httptools_port = server.sockets[0].getsockname()[1]
    print(aiohttp_port, httptools_port, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        ticker.cancel()
        server.close()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.config))


if __name__ == "__main__":
    main()

"""Real upstreams for the proxy tests: a recording HTTP/WebSocket app, served over TCP, TLS or a unix socket,
and the TLS server context for certificates of ``tests.support.certs.TestCA``.

The recording app answers with what it received (as JSON) and keeps every request in a ``Recorder``, so a
test can check what reached the upstream, including requests that a client never saw an answer to.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import ClientError, WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError

from tests.support.certs import Issued, TestCA

CHUNK = 64 * 1024
FIXED_BODY = b"x" * 1000


@dataclass
class Seen:
    """One request as the upstream received it."""

    method: str
    raw_path_qs: str
    headers: list[tuple[str, str]]
    body_bytes: int = 0
    body_complete: bool = False
    peer: object = None

    def header(self, name: str) -> list[str]:
        """Every value received under ``name`` (case-insensitive)."""
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class Recorder:
    """Everything the recording upstream has seen, in order."""

    requests: list[Seen] = field(default_factory=list)
    websocket_closes: list[tuple[int | None, str]] = field(default_factory=list)
    websocket_closed: asyncio.Event = field(default_factory=asyncio.Event)
    upload_ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def last(self) -> Seen:
        """The most recent request."""
        return self.requests[-1]


RECORDER = web.AppKey("recorder", Recorder)


def _seen(request: web.Request) -> Seen:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    seen = Seen(request.method, request.raw_path, list(request.headers.items()), peer=peer)
    request.app[RECORDER].requests.append(seen)
    return seen


async def _read_body(request: web.Request, seen: Seen) -> bool:
    """Count the body; False (``body_complete`` stays False) when the sender aborted it."""
    try:
        async for chunk in request.content.iter_chunked(CHUNK):
            seen.body_bytes += len(chunk)
    except (OSError, ClientError, HttpProcessingError):
        return False
    seen.body_complete = True
    return True


async def echo(request: web.Request) -> web.Response:
    """Any method: read the body, answer with what arrived (headers as a list: repeats stay visible)."""
    seen = _seen(request)
    await _read_body(request, seen)
    peercert = request.transport.get_extra_info("peercert") if request.transport else None
    subject = dict(item[0] for item in peercert.get("subject", ())) if peercert else {}
    return web.json_response(
        {
            "method": seen.method,
            "raw_path_qs": seen.raw_path_qs,
            "headers": seen.headers,
            "body_bytes": seen.body_bytes,
            "client_cert_cn": subject.get("commonName"),
        }
    )


async def fixed(request: web.Request) -> web.Response:
    """1000 bytes with a Content-Length (HEAD gets the same headers and no body)."""
    _seen(request)
    return web.Response(body=FIXED_BODY, content_type="text/plain")


async def hop_by_hop(request: web.Request) -> web.Response:
    """An answer carrying hop-by-hop headers, one of them named only in ``Connection``."""
    _seen(request)
    return web.Response(
        text="hop",
        headers={
            "Connection": "X-Upstream-Hop",
            "X-Upstream-Hop": "private to this hop",
            "Keep-Alive": "timeout=5",
            "Proxy-Authenticate": "Basic realm=upstream",
            "Trailer": "X-Checksum",
            "X-End-To-End": "kept",
        },
    )


async def reset(request: web.Request) -> web.StreamResponse:
    """Promise 1 MiB, send 64 KiB, then drop the connection."""
    _seen(request)
    response = web.StreamResponse(headers={"Content-Length": str(1024 * 1024)})
    await response.prepare(request)
    await response.write(b"r" * CHUNK)
    await asyncio.sleep(0.05)
    assert request.transport is not None
    request.transport.abort()
    return response


async def reset_small(request: web.Request) -> web.StreamResponse:
    """Promise 4 KiB (a body the gateway reads whole), send 100 bytes, then drop the connection."""
    _seen(request)
    response = web.StreamResponse(headers={"Content-Length": "4096"})
    await response.prepare(request)
    await response.write(b"s" * 100)
    await asyncio.sleep(0.05)
    assert request.transport is not None
    request.transport.abort()
    return response


async def early(request: web.Request) -> web.StreamResponse:
    """Answer before reading the request body, then read all of it, then finish the answer."""
    seen = _seen(request)
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(b"started;")
    complete = await _read_body(request, seen)
    request.app[RECORDER].upload_ended.set()
    if complete:
        await response.write(b"done")
        await response.write_eof()
    return response


async def set_cookie(request: web.Request) -> web.Response:
    """Answer with each ``c`` query value as a ``Set-Cookie`` line and each ``c2`` as ``Set-Cookie2``."""
    _seen(request)
    response = web.Response(text="cookies")
    for line in request.query.getall("c", []):
        response.headers.add("Set-Cookie", line)
    for line in request.query.getall("c2", []):
        response.headers.add("Set-Cookie2", line)
    return response


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Echo text and binary; ``close:<code>`` closes from this side; the client's close code is recorded."""
    _seen(request)
    ws = web.WebSocketResponse(protocols=("chat.v2",))
    await ws.prepare(request)
    recorder = request.app[RECORDER]
    async for message in ws:
        if message.type is WSMsgType.TEXT and message.data.startswith("close:"):
            await ws.close(code=int(message.data.split(":", 1)[1]), message=b"upstream says bye")
            break
        if message.type is WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type is WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    recorder.websocket_closes.append((ws.close_code, ""))
    recorder.websocket_closed.set()
    return ws


def recording_app() -> tuple[web.Application, Recorder]:
    """The recording upstream and its recorder."""
    app = web.Application()
    recorder = Recorder()
    app[RECORDER] = recorder
    app.router.add_get("/fixed", fixed)
    app.router.add_get("/hop", hop_by_hop)
    app.router.add_get("/reset", reset)
    app.router.add_get("/reset-small", reset_small)
    app.router.add_post("/early", early)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/{prefix:.*}set-cookie", set_cookie)  # under any route prefix
    app.router.add_route("*", "/{tail:.*}", echo)
    return app, recorder


async def serve_on(
    app: web.Application, *, ssl_context: ssl.SSLContext | None = None, unix_path: Path | None = None
) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on a loopback port the OS picks as it binds (TLS when given a context) or a unix
    socket; (runner, URL)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    if unix_path is not None:
        await web.UnixSite(runner, str(unix_path)).start()
        return runner, f"unix:{unix_path}"
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
    port = runner.addresses[0][1]
    return runner, f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"


def server_context(server: Issued, client_ca: TestCA | None = None) -> ssl.SSLContext:
    """A TLS server context; with ``client_ca`` it requires a client certificate issued by that CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.cert_file, server.key_file)
    if client_ca is not None:
        context.load_verify_locations(client_ca.files.cert_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context

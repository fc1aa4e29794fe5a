"""Test helper endpoints under ``/_demo/``: fixed statuses, redirects, cookies, slow and large answers."""

from __future__ import annotations

import asyncio
import math

from aiohttp import web

MAX_SLOW_SECONDS = 30.0
BYTES_CHUNK = 64 * 1024
_ZEROS = bytes(BYTES_CHUNK)
# 1xx cannot be a final answer, so the status helper only serves 200..599.
MIN_STATUS, MAX_STATUS = 200, 599
NO_BODY_STATUSES = frozenset({204, 304})


def add_helper_routes(app: web.Application) -> None:
    """Register the ``/_demo/*`` helpers (GET and HEAD) ahead of the whoami catch-all."""
    app.router.add_get("/_demo/status/{code}", status)
    app.router.add_get("/_demo/redirect", redirect)
    app.router.add_get("/_demo/cookies", cookies)
    app.router.add_get("/_demo/slow", slow)
    app.router.add_get("/_demo/bytes", zero_bytes)


async def status(request: web.Request) -> web.Response:
    """Answer with the status code from the path."""
    try:
        code = int(request.match_info["code"])
    except ValueError:
        raise web.HTTPBadRequest(text="status code must be an integer\n") from None
    if not MIN_STATUS <= code <= MAX_STATUS:
        raise web.HTTPBadRequest(text=f"status code must be {MIN_STATUS}..{MAX_STATUS}\n")
    if code in NO_BODY_STATUSES:
        return web.Response(status=code)
    return web.json_response({"status": code}, status=code)


async def redirect(request: web.Request) -> web.Response:
    """Answer 302 to ``?to=`` (an open redirect on purpose: it tests the gateway's Location rewriting)."""
    target = request.query.get("to", "")
    if not target:
        raise web.HTTPBadRequest(text="missing ?to=\n")
    if any(c in target for c in "\r\n\0"):
        # A decoded %0d%0a would otherwise split the response (header injection).
        raise web.HTTPBadRequest(text="?to= must not contain control characters\n")
    return web.Response(status=302, headers={"Location": target}, text=f"redirecting to {target}\n")


async def cookies(request: web.Request) -> web.Response:
    """Set two cookies (two ``Set-Cookie`` headers) and echo the cookies received."""
    response = web.json_response({"received": dict(request.cookies)})
    response.set_cookie("demo_a", "alpha", path="/", samesite="Lax")
    response.set_cookie("demo_b", "beta", path="/", httponly=True, samesite="Lax")
    return response


def slow_seconds(raw: str) -> float:
    """Parse ``?seconds=``: a finite number, clamped to 0..30."""
    seconds = float(raw)
    if not math.isfinite(seconds):
        raise ValueError("seconds must be finite")
    return min(max(seconds, 0.0), MAX_SLOW_SECONDS)


async def slow(request: web.Request) -> web.Response:
    """Sleep ``?seconds=N`` (capped at 30) and then answer, to exercise the gateway's timeouts."""
    try:
        seconds = slow_seconds(request.query.get("seconds", "1"))
    except ValueError:
        raise web.HTTPBadRequest(text="?seconds= must be a number\n") from None
    await asyncio.sleep(seconds)
    return web.json_response({"slept": seconds})


async def zero_bytes(request: web.Request) -> web.StreamResponse:
    """Stream ``?n=N`` zero bytes, chunked in 64 KiB pieces, to exercise streaming downloads."""
    try:
        remaining = int(request.query.get("n", "0"))
    except ValueError:
        raise web.HTTPBadRequest(text="?n= must be an integer\n") from None
    if remaining < 0:
        raise web.HTTPBadRequest(text="?n= must not be negative\n")
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    if request.method != "HEAD":
        while remaining > 0:
            size = min(remaining, BYTES_CHUNK)
            await response.write(_ZEROS[:size])
            remaining -= size
    await response.write_eof()
    return response

"""Wiring of the demo backend: settings, the JWKS cache, an HTTP client session and the routes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import MappingProxyType

import aiohttp
from aiohttp import web

from demo.helpers import add_helper_routes
from demo.page import WhoAmI, collect_headers, render_page
from demo.verify import JwksCache, verify_assertion

BODY_CHUNK = 64 * 1024
DEFAULT_ASSERTION_HEADER = "X-Broker-Assertion"
# The page is self-contained: nothing but its own inline style may load, and it never goes in a cache.
HTML_HEADERS = MappingProxyType(
    {
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
)


@dataclass(frozen=True)
class DemoSettings:
    """What the demo backend trusts: the gateway's JWKS, its issuer and the accepted audiences."""

    jwks_url: str
    issuer: str
    audiences: tuple[str, ...] | None
    assertion_header: str


SETTINGS_KEY = web.AppKey("demo_settings", DemoSettings)
JWKS_KEY = web.AppKey("demo_jwks", JwksCache)
HTTP_KEY = web.AppKey("demo_http", aiohttp.ClientSession)


def create_demo_app(
    jwks_url: str,
    issuer: str,
    audiences: list[str] | None = None,
    assertion_header: str = DEFAULT_ASSERTION_HEADER,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> web.Application:
    """Build the whoami app; ``audiences`` None (or empty) skips the audience check."""
    app = web.Application()
    app[SETTINGS_KEY] = DemoSettings(
        jwks_url=jwks_url,
        issuer=issuer,
        audiences=tuple(audiences) if audiences else None,
        assertion_header=assertion_header,
    )
    app[JWKS_KEY] = JwksCache(jwks_url, clock=clock)
    app.cleanup_ctx.append(_http_session)
    add_helper_routes(app)
    app.router.add_route("*", "/{tail:.*}", whoami)
    return app


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as session:
        app[HTTP_KEY] = session
        yield


async def whoami(request: web.Request) -> web.StreamResponse:
    """Answer any method on any path with what the request looked like and who sent it."""
    settings = request.app[SETTINGS_KEY]
    body_bytes = 0
    # Count in chunks so a large upload through the gateway never sits in memory.
    async for chunk in request.content.iter_chunked(BODY_CHUNK):
        body_bytes += len(chunk)
    report = await verify_assertion(
        request.headers.getall(settings.assertion_header, []),
        keys=request.app[JWKS_KEY],
        session=request.app[HTTP_KEY],
        issuer=settings.issuer,
        audiences=settings.audiences,
    )
    info = WhoAmI(
        method=request.method,
        path=request.path,
        query=request.query_string,
        headers=collect_headers(request.headers),
        assertion=report,
        body_bytes=body_bytes,
    )
    if wants_json(request):
        return web.json_response(info.as_json(), headers={"Cache-Control": "no-store"})
    return web.Response(text=render_page(info), content_type="text/html", headers=HTML_HEADERS)


def wants_json(request: web.Request) -> bool:
    """JSON for ``?format=json`` or an Accept that asks for JSON and not HTML; HTML otherwise."""
    explicit = request.query.get("format")
    if explicit is not None:
        return explicit.lower() == "json"
    accept = request.headers.get("Accept", "").lower()
    return "application/json" in accept and "text/html" not in accept

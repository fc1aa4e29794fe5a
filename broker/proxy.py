"""Forward a request to its upstream and stream the answer back.

- Bodies stream both ways in chunks; nothing is buffered whole.
- Hop-by-hop headers (RFC 9110 7.6.1) and those named in ``Connection`` are dropped both ways.
- Client-sent identity headers are dropped in every spelling a backend could read as the same name
  (case, ``_`` vs ``-``), together with anything under the reserved ``X-Broker-`` prefix; then the
  broker adds its own. This is the one place headers leave the broker, so stripping here covers every
  route, public ones included.
- The broker's own cookie is removed from ``Cookie``; upstream redirects pass through untouched.
- Upstream unreachable -> 502, too slow -> 504, each a clear page with the request id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from broker.middleware import error_response
from broker.routing import Route
from broker.runtime import request_id_of

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Set by the broker itself from what it knows; a client's copies are never passed on.
BROKER_SET = frozenset(
    {"host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-request-id"}
)
RESERVED_PREFIX = "x-broker-"
STREAM_CHUNK = 64 * 1024


def header_spelling(name: str) -> str:
    """The form two names share when a backend could read them as one (``X_User`` = ``x-user``)."""
    return name.lower().replace("_", "-")


def connection_listed(headers: Mapping[str, str]) -> set[str]:
    """Header names the sender marked hop-by-hop through ``Connection``."""
    listed: set[str] = set()
    values = (
        headers.getall("Connection", [])
        if isinstance(headers, CIMultiDict)
        else [headers.get("Connection", "")]
    )
    for value in values:
        listed |= {header_spelling(v.strip()) for v in value.split(",") if v.strip()}
    return listed


def without_cookie(cookie_header: str, name: str) -> str:
    """The ``Cookie`` header minus the broker's own cookie (the upstream must never see the ticket)."""
    kept = []
    for part in cookie_header.split(";"):
        key = part.split("=", 1)[0].strip()
        if key and key != name:
            kept.append(part.strip())
    return "; ".join(kept)


def upstream_headers(
    incoming: CIMultiDict[str],
    *,
    protected: Iterable[str],
    cookie_name: str,
    added: Mapping[str, str],
) -> CIMultiDict[str]:
    """The headers to send upstream: the client's, filtered, plus the broker's own."""
    drop = HOP_BY_HOP | BROKER_SET | {header_spelling(p) for p in protected} | connection_listed(incoming)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        spelling = header_spelling(name)
        if spelling in drop or spelling.startswith(RESERVED_PREFIX):
            continue
        if spelling == "cookie":
            value = without_cookie(value, cookie_name)
            if not value:
                continue
        out.add(name, value)
    for name, value in added.items():
        out[name] = value
    return out


def response_headers(incoming: CIMultiDict[str]) -> CIMultiDict[str]:
    """The upstream's response headers minus hop-by-hop ones (multiple ``Set-Cookie`` are kept)."""
    drop = HOP_BY_HOP | connection_listed(incoming)
    return CIMultiDict((k, v) for k, v in incoming.items() if header_spelling(k) not in drop)


def forwarded_headers(request: web.Request, scheme: str) -> dict[str, str]:
    """``X-Forwarded-*`` and ``Forwarded`` describing the client as the broker saw it."""
    peer = request.remote or "unknown"
    host = request.host
    return {
        "X-Forwarded-For": peer,
        "X-Forwarded-Proto": scheme,
        "X-Forwarded-Host": host,
        "Forwarded": f'for="{peer}";proto={scheme};host="{host}"',
    }


def upstream_url(route: Route, request: web.Request) -> URL:
    """The upstream base URL joined with the request's raw path and query (encoding kept as sent)."""
    base = URL(route.config.upstream)
    path = base.raw_path.rstrip("/") + request.rel_url.raw_path
    return base.with_path(path, encoded=True).with_query(request.rel_url.raw_query_string or None)


async def forward(
    request: web.Request,
    route: Route,
    http: aiohttp.ClientSession,
    *,
    protected_headers: Iterable[str],
    cookie_name: str,
    added_headers: Mapping[str, str],
    scheme: str,
) -> web.StreamResponse:
    """Proxy one request to ``route``'s upstream, streaming both ways."""
    headers = upstream_headers(
        request.headers.copy(),
        protected=protected_headers,
        cookie_name=cookie_name,
        added={**forwarded_headers(request, scheme), "X-Request-Id": request_id_of(request), **added_headers},
    )
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=route.config.connect_timeout, sock_read=route.config.read_timeout
    )
    url = upstream_url(route, request)
    try:
        async with http.request(
            request.method,
            url,
            headers=headers,
            data=request.content if request.body_exists else None,
            allow_redirects=False,
            timeout=timeout,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            response.headers.extend(response_headers(upstream.headers.copy()))
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(STREAM_CHUNK):
                await response.write(chunk)
            await response.write_eof()
            return response
    except TimeoutError:
        log.warning("upstream timed out", extra={"route": route.index, "request_id": request_id_of(request)})
        return error_response(
            request,
            504,
            "The application took too long to answer",
            "The application behind this address did not answer in time. Please try again.",
            "upstream_timeout",
        )
    except aiohttp.ClientError as exc:
        log.warning(
            "upstream failed: %s",
            type(exc).__name__,
            extra={"route": route.index, "request_id": request_id_of(request)},
        )
        return error_response(
            request,
            502,
            "The application is not reachable",
            "The application behind this address is not answering right now. Please try again in a moment.",
            "upstream_unreachable",
        )

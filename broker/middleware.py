"""Request middleware: a request id on every request, errors turned into clear pages or JSON, every
request counted and logged, and (``tracing.enabled``) traced.

No exception ever reaches the user as a stack trace: known broker errors map to explained 4xx/5xx
answers, anything else is logged with its traceback server-side and answered with a plain 500.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from aiohttp import HttpVersion10, web
from aiohttp.typedefs import Handler, Middleware

from broker.errors import IdentityProviderUnavailable, SessionStoreUnavailable
from broker.gateway import gateway_of
from broker.grammar.host import parse_host
from broker.http.responses import (
    REQUEST_ID_KEY,
    ROUTE_LABEL_KEY,
    SESSION_KEY,
    error_response,
    request_id_of,
)
from broker.ops.events import access_log, current_request_id, current_trace_id, log_access
from broker.ops.metrics import METRICS
from broker.ops.tracing import Tracing, trace_id_of
from broker.proxy.forwarded import is_trusted

log = logging.getLogger(__name__)

# Accept a caller's request id only when it is short and plain, so it cannot inject into logs or pages.
_INCOMING_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Assign (or accept) a request id; it is logged, shown on error pages and passed upstream.

    Requests older than HTTP/1.0, and a Host that is not a valid ``host[:port]``, are refused here, first,
    before anything else reads the Host.
    """
    incoming = request.headers.get("X-Request-Id", "")
    request[REQUEST_ID_KEY] = incoming if _INCOMING_REQUEST_ID.match(incoming) else secrets.token_hex(12)
    current_request_id.set(request[REQUEST_ID_KEY])
    if request.version < HttpVersion10:
        # HTTP/0.9 has no Host header: routing would fall back to the listening address. Refuse it, as
        # an HTTP/1.1 request without Host is refused.
        return error_response(request, 400, "Bad request", "HTTP/1.0 or later is required.", "http_version")
    if parse_host(request.host) is None:
        # Everything after this (routing, return URLs, X-Forwarded-Host, Forwarded) reads the Host: a value
        # that is not a plain host[:port] (userinfo "a:@evil", spaces, junk ports) is refused here, once.
        return error_response(request, 400, "Bad request", "The Host header is not a valid host.", "bad_host")
    response = await handler(request)
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id_of(request)
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Translate failures into answers a person (or a client) can act on."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except SessionStoreUnavailable as exc:
        # Counted in broker_session_store_errors_total where it failed (the store boundary), by operation.
        log.error("session store unavailable: %s", exc)
        return error_response(
            request,
            503,
            "Service temporarily unavailable",
            "The sign-in service cannot reach its session store right now. Please try again in a moment.",
            "session_store_unavailable",
        )
    except IdentityProviderUnavailable as exc:
        log.error("identity provider unavailable: %s", exc)
        return error_response(
            request,
            503,
            "Microsoft sign-in is unreachable",
            "The gateway cannot reach Microsoft's sign-in service right now. Please try again in a moment.",
            "identity_provider_unavailable",
        )
    except Exception:
        log.exception("unhandled error")
        return error_response(
            request,
            500,
            "Something went wrong",
            "The gateway hit an unexpected error. Please try again; if it persists, give the request ID "
            "below to your administrator.",
            "internal_error",
        )


# Requests to the broker's own pages are labelled "broker"; proxied ones get their route's name.


@web.middleware
async def accounting_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request by route and status (until the answer's headers are sent), and write
    its access-log line (``server.access_log``; queued, never blocking: see ``logging_setup``)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        metrics = request.app[METRICS]
        label = request.get(ROUTE_LABEL_KEY, "broker")
        metrics.answered(label, status, elapsed)
        if access_log.isEnabledFor(logging.INFO) and gateway_of(request).config.server.access_log:
            _log_access(request, status, elapsed, label)


def _log_access(request: web.Request, status: int, elapsed: float, route: str) -> None:
    """Method, path without the query (it can carry codes or tokens), status, time, route and, when a session
    was used, who (``tid:oid``) and their company. Never headers, cookies or bodies."""
    session = request.get(SESSION_KEY)
    log_access(
        request.method,
        request.rel_url.raw_path,
        status,
        round(elapsed * 1000, 2),
        route,
        request.remote,
        session.user_key if session is not None else None,
        session.login_code if session is not None else None,
    )


# Method names a span may carry (RFC 9110's and WebDAV's); any other is "HTTP": span names stay few.
_SPAN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "PROPFIND", "MKCOL"}
)


def tracing_middleware(tracing: Tracing) -> Middleware:
    """One server span per request (added only when tracing is on): named ``METHOD route``, with the route,
    company and decision, the status; its trace id on every log line of the request (``trace_id``)."""
    from opentelemetry import propagate, trace  # imported only when tracing is on

    tracer = tracing.tracer
    assert tracer is not None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # A client's traceparent is continued only from a trusted proxy (``server.trusted_proxies``), as
        # X-Forwarded-For is: anyone else could pick our trace ids or force every request to be sampled.
        gateway = gateway_of(request)
        trusted = gateway.boundary.trusted
        parent = propagate.extract(request.headers) if is_trusted(request.remote, trusted) else None
        method = request.method if request.method in _SPAN_METHODS else "HTTP"
        with (
            tracing.serving(),
            tracer.start_as_current_span(method, context=parent, kind=trace.SpanKind.SERVER) as span,
        ):
            token = current_trace_id.set(trace_id_of(span))
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                current_trace_id.reset(token)
                route = request.get(ROUTE_LABEL_KEY, "broker")
                session = request.get(SESSION_KEY)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.response.status_code", status)
                span.set_attribute("broker.route", route)
                # The company: the session's, else a login page's code (only a configured one: bounded).
                company = session.login_code if session is not None else request.match_info.get("code", "")
                if company in gateway.config.tenants:
                    span.set_attribute("broker.company", company)
                if status >= 500:
                    span.set_status(trace.StatusCode.ERROR)

    return middleware

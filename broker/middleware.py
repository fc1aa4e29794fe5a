"""Request middleware: one layer around every request that chooses the page language, assigns a request id
(and refuses an invalid Host), turns failures into clear pages or JSON, counts and logs the request, and
(``tracing.enabled``) opens its span.

One layer, not five: each aiohttp middleware costs a coroutine, an await and a ``functools.partial`` call on
every request (issue 19), and these stages always run together in this order:

    page language -> request id and Host -> [span] -> accounting (metrics, access line) -> error translation

Not even an aiohttp middleware: any app middleware makes aiohttp add one more layer of its own around every
request (it re-points ``match_info.current_app``, which a single app never needs). ``app.add_routes`` wraps
each route's handler in these stages instead (``staged``), and registers every path for every method, so no
answer comes from aiohttp's router: a method a path does not take gets its 405 from ``by_method``, inside the
stages, counted and logged like any other (issue 19: ~12 us of a hello-world request; with the Host memo,
0.89-0.92x CPU per proxied request in alternation).

No exception ever reaches the user as a stack trace: known broker errors map to explained 4xx/5xx
answers, anything else is logged with its traceback server-side and answered with a plain 500.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

from aiohttp import HttpVersion10, web
from aiohttp.typedefs import Handler, Middleware

from broker.errors import IdentityProviderUnavailable, SessionStoreUnavailable
from broker.gateway import gateway_of
from broker.grammar.host import parse_host
from broker.http.pages.language import choose_page_language, forget_page_language
from broker.http.responses import (
    REQUEST_ID_KEY,
    ROUTE_LABEL_KEY,
    SESSION_KEY,
    error_response,
)
from broker.ops.events import access_log, current_request_id, current_trace_id, log_access
from broker.ops.metrics import METRICS
from broker.ops.tracing import Tracing, trace_id_of

log = logging.getLogger(__name__)

# Accept a caller's request id only when it is short and plain, so it cannot inject into logs or pages.
_INCOMING_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# Tracing off: the span stage is this shared, stateless no-op (entered any number of times).
_UNTRACED: AbstractContextManager[None] = nullcontext()


def identify(request: web.Request) -> web.Response | None:
    """Assign (or accept) a request id; it is logged, shown on error pages and passed upstream.

    Returns a 400 for a request older than HTTP/1.0 or a Host that is not a valid ``host[:port]``: refused
    here, first, before anything else reads the Host (such a refusal is neither counted nor logged).
    """
    incoming = request.headers.get("X-Request-Id", "")
    # Not a secret (a client may name its own, above): 96 bits from the process's PRNG (re-seeded in each
    # forked worker by the random module), not a system call per request as ``secrets`` would make.
    request_id = incoming if _INCOMING_REQUEST_ID.match(incoming) else random.randbytes(12).hex()
    request[REQUEST_ID_KEY] = request_id
    current_request_id.set(request_id)
    if request.version < HttpVersion10:
        # HTTP/0.9 has no Host header: routing would fall back to the listening address. Refuse it, as
        # an HTTP/1.1 request without Host is refused.
        return error_response(request, 400, "Bad request", "HTTP/1.0 or later is required.", "http_version")
    if parse_host(request.host) is None:
        # Everything after this (routing, return URLs, X-Forwarded-Host, Forwarded) reads the Host: a value
        # that is not a plain host[:port] (userinfo "a:@evil", spaces, junk ports) is refused here, once.
        return error_response(request, 400, "Bad request", "The Host header is not a valid host.", "bad_host")
    return None


def translated(request: web.Request, exc: Exception) -> web.Response:
    """The answer a person (or a client) can act on for a failure a handler raised."""
    if isinstance(exc, SessionStoreUnavailable):
        # Counted in broker_session_store_errors_total where it failed (the store boundary), by operation.
        log.error("session store unavailable: %s", exc)
        return error_response(
            request,
            503,
            "Service temporarily unavailable",
            "The sign-in service cannot reach its session store right now. Please try again in a moment.",
            "session_store_unavailable",
        )
    if isinstance(exc, IdentityProviderUnavailable):
        log.error("identity provider unavailable: %s", exc)
        return error_response(
            request,
            503,
            "Microsoft sign-in is unreachable",
            "The gateway cannot reach Microsoft's sign-in service right now. Please try again in a moment.",
            "identity_provider_unavailable",
        )
    log.error("unhandled error", exc_info=exc)
    return error_response(
        request,
        500,
        "Something went wrong",
        "The gateway hit an unexpected error. Please try again; if it persists, give the request ID "
        "below to your administrator.",
        "internal_error",
    )


def account(request: web.Request, status: int, elapsed: float) -> None:
    """Count and time the request by route and status (until the answer's headers are sent), and write its
    access-log line (``server.access_log``; queued, never blocking: see ``logging_setup``). Requests to the
    broker's own pages are labelled "broker"; proxied ones get their route's name."""
    label = request.get(ROUTE_LABEL_KEY, "broker")
    request.app[METRICS].answered(label, status, elapsed)
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


@dataclass
class Outcome:
    """The status a request ended with, told to its span when the span closes."""

    status: int = 500


# Method names a span may carry (RFC 9110's and WebDAV's); any other is "HTTP": span names stay few.
_SPAN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "PROPFIND", "MKCOL"}
)


class RequestSpans:
    """One server span per request (only when tracing is on): named ``METHOD route``, with the route,
    company and decision, the status; its trace id on every log line of the request (``trace_id``)."""

    def __init__(self, tracing: Tracing) -> None:
        from opentelemetry import propagate, trace  # imported only when tracing is on

        assert tracing.tracer is not None
        self._tracing = tracing
        self._tracer = tracing.tracer
        self._propagate = propagate
        self._trace = trace

    @contextmanager
    def opened(self, request: web.Request) -> Iterator[Outcome]:
        """The request's span, current while it is handled; the caller sets the yielded outcome's status."""
        # A client's traceparent is continued only from a trusted proxy (``server.trusted_proxies``), as
        # X-Forwarded-For is: anyone else could pick our trace ids or force every request to be sampled.
        gateway = gateway_of(request)
        trusted = gateway.boundary.trusts(request.remote)
        parent = self._propagate.extract(request.headers) if trusted else None
        method = request.method if request.method in _SPAN_METHODS else "HTTP"
        outcome = Outcome()
        server = self._trace.SpanKind.SERVER
        with (
            self._tracing.serving(),
            self._tracer.start_as_current_span(method, context=parent, kind=server) as span,
        ):
            token = current_trace_id.set(trace_id_of(span))
            try:
                yield outcome
            finally:
                current_trace_id.reset(token)
                route = request.get(ROUTE_LABEL_KEY, "broker")
                session = request.get(SESSION_KEY)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.response.status_code", outcome.status)
                span.set_attribute("broker.route", route)
                # The company: the session's, else a login page's code (only a configured one: bounded).
                company = session.login_code if session is not None else request.match_info.get("code", "")
                if company in gateway.config.tenants:
                    span.set_attribute("broker.company", company)
                if outcome.status >= 500:
                    span.set_status(self._trace.StatusCode.ERROR)


def request_middleware(tracing: Tracing | None = None) -> Middleware:
    """Every stage of the module docstring, in that order, as one aiohttp-style middleware ``(request,
    handler)`` (the span only when ``tracing`` has a tracer: off, not even a check beyond one ``is None``).
    ``staged`` applies it to a handler."""
    spans = RequestSpans(tracing) if tracing is not None and tracing.tracer is not None else None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        language = choose_page_language(request.headers.get("Accept-Language", ""))
        try:
            refusal = identify(request)
            if refusal is not None:
                return refusal
            with spans.opened(request) if spans is not None else _UNTRACED as outcome:
                started = time.perf_counter()
                status = 500
                try:
                    try:
                        response = await handler(request)
                    except web.HTTPException:
                        raise
                    except Exception as exc:
                        response = translated(request, exc)
                    status = response.status
                except web.HTTPException as exc:
                    # A raised answer (a redirect, by_method's 405) is sent by aiohttp: it carries the id too.
                    status = exc.status
                    exc.headers["X-Request-Id"] = request[REQUEST_ID_KEY]
                    raise
                finally:
                    account(request, status, time.perf_counter() - started)
                    if outcome is not None:
                        outcome.status = status
            if not response.prepared:
                response.headers["X-Request-Id"] = request[REQUEST_ID_KEY]
            return response
        finally:
            forget_page_language(language)

    return middleware


def staged(stages: Middleware, handler: Handler) -> Handler:
    """``handler`` with the request stages around it (what an app middleware would do, one layer cheaper)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await stages(request, handler)

    return handle


def by_method(handlers: Mapping[str, Handler]) -> Handler:
    """One handler for a path that several methods share; any other method is answered 405 with ``Allow``
    (as aiohttp's router would), from inside the request stages. A ``GET`` handler also answers ``HEAD``."""
    table = dict(handlers)
    if "GET" in table:
        table.setdefault("HEAD", table["GET"])
    allowed = frozenset(table)

    async def dispatch(request: web.Request) -> web.StreamResponse:
        handler = table.get(request.method)
        if handler is None:
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        return await handler(request)

    return dispatch

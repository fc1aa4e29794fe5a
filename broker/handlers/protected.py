"""The catch-all: every request that is not the broker's own goes through these named stages.

match route -> (session) -> login required? -> policy -> body size -> identity headers -> forward upstream
                                                                                      or relay WebSocket

A WebSocket upgrade takes the same stages as any request (no session -> 401, never a redirect: a script
cannot follow one; policy -> 403) and is refused with 403 on routes with ``websockets: false``.
Every answer given before forwarding is given without reading the request body.
"""

from __future__ import annotations

import logging

from aiohttp import web

from broker.gateway import gateway_of
from broker.handlers.access import (
    Admission,
    Ambiguous,
    Outcome,
    admit,
    bearer_refusal,
    find_route,
    forbidden,
    login_target,
)
from broker.handlers.login import alias_code as login_alias_code
from broker.handlers.login import render_company_page
from broker.http.responses import ROUTE_LABEL_KEY, error_response, request_id_of, wants_html
from broker.ops.tracing import annotate
from broker.proxy.boundary import is_websocket_upgrade
from broker.proxy.forward import body_too_large, declared_too_large, forward, unread_answer
from broker.proxy.routing import Route, matching_path
from broker.proxy.websocket import relay

log = logging.getLogger(__name__)

# The access decision, as the request's span records it (tracing on only).
DECISION_PUBLIC = {"broker.decision": "public"}
DECISION_LOGIN_REQUIRED = {"broker.decision": "login_required"}
DECISION_ALLOWED = {"broker.decision": "allowed"}
DECISION_DENIED = {"broker.decision": "denied"}


async def handle(request: web.Request) -> web.StreamResponse:
    """Route, authenticate, authorise and proxy one request."""
    gw = gateway_of(request)
    if request.method in ("GET", "HEAD") and gw.config.server.login_aliases:
        path = matching_path(request.raw_path)
        code = login_alias_code(gw.config.server.login_aliases, path) if path is not None else None
        if code is not None:
            return await render_company_page(request, gw, code)
    try:
        route, path = find_route(gw, request.host, request.raw_path)
    except Ambiguous:
        # The upstream could read this spelling as another route's path (case, trailing dots, look-alikes).
        return _ambiguous(request)
    request[ROUTE_LABEL_KEY] = route.label if route is not None else "unrouted"
    if route is None:
        return error_response(
            request, 404, "No application here", "This address is not served by the gateway.", "no_route"
        )
    upgrade = is_websocket_upgrade(request.headers)
    admission = await admit(gw, request, route, request.host, path, request.raw_path)
    annotate(_decision(admission))
    if admission.outcome is Outcome.LOGIN_REQUIRED:
        return unread_answer(request, _login_required(request, route, upgrade))
    if admission.outcome in (Outcome.INVALID_TOKEN, Outcome.INSUFFICIENT_SCOPE):
        return unread_answer(request, bearer_refusal(request, route, admission))
    if admission.outcome is Outcome.FORBIDDEN:
        assert admission.session is not None
        return unread_answer(request, forbidden(request, admission.session, admission.reason))
    if declared_too_large(request, route):
        return body_too_large(request, route)
    if upgrade and not route.config.websockets:
        return error_response(
            request,
            403,
            "WebSockets are not enabled here",
            "This application is not configured to accept WebSocket connections through the gateway.",
            "websockets_disabled",
        )
    session = admission.session
    added = (
        gw.identity.for_request(session, route, request.host, gw.clock())
        if session is not None and not admission.anonymous
        else {}
    )
    if route.config.upstream is None:
        # An auth-only route: its app is served by an ingress that asks /.auth/verify, not through here.
        return error_response(
            request, 404, "No application here", "This address is not served by the gateway.", "no_route"
        )
    upstream = gw.upstreams.for_route(route.index)
    api = route.config.api
    # A bearer token stays at the broker unless the route asks for it: the assertion carries the identity.
    boundary = gw.bearer_boundary if admission.bearer and api and not api.forward_token else gw.boundary
    if upgrade:
        return await relay(request, route, upstream, boundary, added)
    return await forward(request, route, upstream, boundary, added)


def _decision(admission: Admission) -> dict[str, str]:
    """The request span's ``broker.decision`` (tracing): public, login_required, allowed or denied."""
    if admission.outcome is Outcome.LOGIN_REQUIRED:
        return DECISION_LOGIN_REQUIRED
    if admission.outcome is not Outcome.ALLOW:
        return DECISION_DENIED
    return DECISION_PUBLIC if admission.anonymous else DECISION_ALLOWED


def _ambiguous(request: web.Request) -> web.StreamResponse:
    """400 for a path that servers read differently: refused before any route or session is looked at."""
    log.warning("ambiguous request path refused", extra={"request_id": request_id_of(request)})
    return error_response(
        request,
        400,
        "Bad request",
        "This address is not valid (it contains dot segments, backslashes or a spelling the application "
        "could read as another address).",
        "ambiguous_path",
    )


def _login_required(request: web.Request, route: Route, upgrade: bool) -> web.StreamResponse:
    """Browsers go to the route's company login (or the chooser); API clients and WebSocket upgrades
    get 401 JSON."""
    target = login_target(route, request.method, request.rel_url.raw_path_qs)
    if wants_html(request) and request.method in ("GET", "HEAD") and not upgrade:
        raise web.HTTPFound(target, headers={"Cache-Control": "no-store"})
    response = error_response(
        request, 401, "Sign-in required", "Sign in to use this application.", "login_required"
    )
    response.headers["WWW-Authenticate"] = f'Broker realm="entra-broker", login="{target}"'
    if route.config.api is not None:
        response.headers.add("WWW-Authenticate", 'Bearer realm="entra-broker"')  # RFC 6750 section 3
    return response

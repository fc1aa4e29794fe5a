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

from broker.gateway import Gateway, gateway_of
from broker.grammar.path_folding import fold
from broker.handlers.login import alias_code as login_alias_code
from broker.handlers.login import login_path, render_company_page
from broker.handlers.session import current_session
from broker.http import paths
from broker.http.pages import views
from broker.http.responses import ROUTE_LABEL_KEY, error_response, request_id_of, wants_html
from broker.identity.policy_rules import Decision, RequestFacts, method_overridden
from broker.ops.events import audit
from broker.proxy.boundary import is_websocket_upgrade
from broker.proxy.forward import body_too_large, declared_too_large, forward, unread_answer
from broker.proxy.forwarded import client_address
from broker.proxy.routing import AmbiguousRoute, Route, matching_path
from broker.proxy.websocket import relay
from broker.sessions.model import Session

log = logging.getLogger(__name__)


async def handle(request: web.Request) -> web.StreamResponse:
    """Route, authenticate, authorise and proxy one request."""
    gw = gateway_of(request)
    path = matching_path(request.raw_path)
    if path is None:
        return _ambiguous(request)
    if request.method in ("GET", "HEAD") and gw.config.server.login_aliases:
        code = login_alias_code(gw.config.server.login_aliases, path)
        if code is not None:
            return await render_company_page(request, gw, code)
    try:
        route = gw.routes.match(request.host, path)
    except AmbiguousRoute:
        # The upstream could read this spelling as another route's path (case, trailing dots, look-alikes).
        return _ambiguous(request)
    request[ROUTE_LABEL_KEY] = route.label if route is not None else "unrouted"
    if route is None:
        return error_response(
            request, 404, "No application here", "This address is not served by the gateway.", "no_route"
        )
    upgrade = is_websocket_upgrade(request.headers)
    mode = route.config.auth
    anonymous_ok = route.admits_anonymous(path)
    if anonymous_ok and ";" in request.raw_path.split("?", 1)[0]:
        anonymous_ok = _public_when_read_literally(gw, request)
    session = None
    if not anonymous_ok or mode == "optional":
        session = await current_session(gw, request)
    if session is None and mode == "enforce" and not anonymous_ok:
        return unread_answer(request, _login_required(request, route, upgrade))
    if session is not None and not anonymous_ok:
        decision = _decide(gw, request, route, session, path)
        if not decision.allowed:
            audit(
                "access_denied",
                who=session.user_key,
                company=session.login_code,
                why=decision.reason,
                rule=decision.rule,
                route=route.label,
            )
            return unread_answer(request, _forbidden(request, session, decision.reason))
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
    added = (
        gw.identity.for_request(session, route, request.host, gw.clock())
        if session is not None and not anonymous_ok
        else {}
    )
    upstream = gw.upstreams.for_route(route.index)
    if upgrade:
        return await relay(request, route, upstream, gw.forwarding, added)
    return await forward(request, route, upstream, gw.forwarding, added)


def _decide(gw: Gateway, request: web.Request, route: Route, session: Session, path: str) -> Decision:
    """The route's compiled rules on this request (the policy stage)."""
    policy = gw.policies[route.index]
    if policy.tests_method and method_overridden(list(request.headers.keys())):
        # The upstream might act on the overriding method, which no rule saw: refused, never guessed.
        return Decision(False, "method-override headers are not accepted here", "method-override")
    client = (
        client_address(request.remote, request.headers.getall("X-Forwarded-For", []), gw.forwarding.trusted)
        if policy.needs_client
        else None
    )
    return policy.decide(RequestFacts(session, request.method, fold(path, route.rules), client))


def _public_when_read_literally(gw: Gateway, request: web.Request) -> bool:
    """With ``;`` parameters in the path, a request is anonymous only if the literal reading is public too."""
    literal = matching_path(request.raw_path, strip_params=False)
    if literal is None:
        return False
    try:
        route = gw.routes.match(request.host, literal)
    except AmbiguousRoute:
        return False
    return route is not None and route.admits_anonymous(literal)


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
    rd = request.rel_url.raw_path_qs if request.method in ("GET", "HEAD") else "/"
    code = route.login_code
    target = login_path(code, rd) if code else paths.with_return_to(paths.LOGIN, rd)
    if wants_html(request) and request.method in ("GET", "HEAD") and not upgrade:
        raise web.HTTPFound(target, headers={"Cache-Control": "no-store"})
    response = error_response(
        request, 401, "Sign-in required", "Sign in to use this application.", "login_required"
    )
    response.headers["WWW-Authenticate"] = f'Broker realm="entra-broker", login="{target}"'
    return response


def _forbidden(request: web.Request, session: Session, reason: str) -> web.StreamResponse:
    """403 that says which company the user is signed in with and offers to switch."""
    message = (
        f"You are signed in as {session.name or session.preferred_username} with the company login "
        f"'{session.login_code}', which may not use this application ({reason})."
    )
    if wants_html(request):
        return views.simple(
            "You don't have access",
            message,
            403,
            request_id_of(request),
            link=(paths.LOGOUT, "Switch account"),
        )
    return web.json_response(
        {
            "error": "forbidden",
            "message": message,
            "login_code": session.login_code,
            "request_id": request_id_of(request),
        },
        status=403,
    )

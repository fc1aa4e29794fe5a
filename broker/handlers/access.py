"""The stages a protected request and a forward-auth check share: route match, session, policy.

``handlers/protected.py`` (the broker as the reverse proxy) and ``handlers/verify.py`` (forward-auth for an
ingress) ask the same question of the same config: may this request, for this host and path, pass? Both
call ``find_route`` and ``admit`` so one config can mix both modes and they never drift apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

from aiohttp import web

from broker.errors import InvalidToken
from broker.gateway import Gateway
from broker.grammar.path_folding import fold
from broker.handlers.login import login_path
from broker.handlers.session import current_session
from broker.http import paths
from broker.http.pages import views
from broker.http.responses import request_id_of, wants_html
from broker.identity.bearer import bearer_token, decide_api_access
from broker.identity.policy_rules import Decision, RequestFacts, method_overridden
from broker.ops.events import audit
from broker.proxy.forwarded import client_address
from broker.proxy.routing import AmbiguousRoute, Route, matching_path
from broker.sessions.model import Session

log = logging.getLogger(__name__)


class Outcome(Enum):
    """What the access stages decided."""

    ALLOW = "allow"
    LOGIN_REQUIRED = "login_required"
    FORBIDDEN = "forbidden"
    INVALID_TOKEN = "invalid_token"  # a bearer token that failed validation (RFC 6750 401)
    INSUFFICIENT_SCOPE = "insufficient_scope"  # a valid bearer token without the API's scope/role (403)


@dataclass(frozen=True)
class Admission:
    """The decision for one request: the session that carries it (None when anonymous) and why not."""

    outcome: Outcome
    session: Session | None = None
    anonymous: bool = False
    reason: str = ""
    bearer: bool = False  # authenticated by an access token (no session, nothing stored)


class Ambiguous(Exception):
    """The path is one servers read differently: refused before any route or session is looked at."""


def find_route(gw: Gateway, host: str, raw_path: str) -> tuple[Route | None, str]:
    """The route serving ``host`` and ``raw_path`` (path only, no query), and the decoded path it matched.

    Raises ``Ambiguous`` for a path an upstream could read as another route's (case, dots, look-alikes).
    """
    found = gw.routes.lookup(host, raw_path)
    if found is None:
        raise Ambiguous(raw_path)
    return found


async def admit(
    gw: Gateway, request: web.Request, route: Route, host: str, path: str, raw_path: str
) -> Admission:
    """Session and policy for a request to ``route`` at ``host`` (its cookie: ``request``'s).

    ``path`` is what ``find_route`` matched, ``raw_path`` the path as sent (a query is ignored).
    ``anonymous`` is set when the path needs no session (public route or public path): no identity is
    then sent, even for a signed-in user on an ``enforce`` route.
    """
    mode = route.config.auth
    anonymous_ok = route.admits_anonymous(path)
    if anonymous_ok and ";" in raw_path.split("?", 1)[0]:
        anonymous_ok = _public_when_read_literally(gw, host, raw_path)
    if not anonymous_ok and route.config.api is not None:
        token = bearer_token(request.headers)
        if token is not None:
            return await _admit_bearer(gw, request, route, token, path)
    session = None
    if not anonymous_ok or mode == "optional":
        session = await current_session(gw, request)
    if session is None and mode == "enforce" and not anonymous_ok:
        return Admission(Outcome.LOGIN_REQUIRED)
    if session is not None and not anonymous_ok:
        decision = decide(gw, request, route, session, path)
        if not decision.allowed:
            _audit_denied(session, decision, route)
            return Admission(Outcome.FORBIDDEN, session, reason=decision.reason)
    return Admission(Outcome.ALLOW, session, anonymous=anonymous_ok or session is None)


async def _admit_bearer(gw: Gateway, request: web.Request, route: Route, token: str, path: str) -> Admission:
    """An API caller: the token validated (cached), then the API's scopes/roles and the route's policy."""
    api = route.config.api
    assert api is not None
    try:
        principal, caller = await gw.bearer.authenticate(token, route, gw.clock())
    except InvalidToken as exc:
        # The log names the rule; the caller only hears "invalid_token" (RFC 6750 3.1).
        log.info("bearer token refused", extra={"why": str(exc), "route": route.label})
        return Admission(Outcome.INVALID_TOKEN, reason=str(exc))
    decision = decide_api_access(api, caller)
    if decision.allowed:
        decision = decide(gw, request, route, principal, path)
    if not decision.allowed:
        _audit_denied(principal, decision, route, client=caller.client_id)
        return Admission(Outcome.INSUFFICIENT_SCOPE, principal, reason=decision.reason, bearer=True)
    return Admission(Outcome.ALLOW, principal, bearer=True)


def _audit_denied(who: Session, decision: Decision, route: Route, **fields: str) -> None:
    """The ``access_denied`` audit event: who, which company, the deciding rule and its reason."""
    audit(
        "access_denied",
        who=who.user_key,
        company=who.login_code,
        why=decision.reason,
        rule=decision.rule,
        route=route.label,
        **fields,
    )


def decide(gw: Gateway, request: web.Request, route: Route, session: Session, path: str) -> Decision:
    """The route's compiled rules (``Gateway.policies``, built once per config) on this request's facts:
    who, the method, the path under the route as its upstream reads it, and the client address as the
    trusted-proxy rules establish it (only looked up when a rule tests it)."""
    policy = gw.policies[route.index]
    if policy.tests_method and method_overridden(list(request.headers.keys())):
        # The upstream might act on the overriding method, which no rule saw: refused, never guessed.
        return Decision(False, "method-override headers are not accepted here", "method-override")
    client = (
        client_address(request.remote, request.headers.getall("X-Forwarded-For", []), gw.boundary.trusted)
        if policy.needs_client
        else None
    )
    return policy.decide(RequestFacts(session, request.method, fold(path, route.rules), client))


def bearer_refusal(request: web.Request, route: Route, admission: Admission) -> web.Response:
    """RFC 6750 section 3: 401 ``invalid_token`` (never which check failed) or 403 ``insufficient_scope``."""
    api = route.config.api
    if admission.outcome is Outcome.INVALID_TOKEN:
        status, error, description = 401, "invalid_token", "The access token is not valid for this API."
        challenge = f'Bearer realm="entra-broker", error="{error}", error_description="{description}"'
    else:
        status, error, description = 403, "insufficient_scope", "The access token does not grant this API."
        wanted = " ".join([*(api.scopes if api else []), *(api.app_roles if api else [])])
        challenge = f'Bearer realm="entra-broker", error="{error}", scope="{wanted}"'
    return web.json_response(
        {"error": error, "error_description": description, "request_id": request_id_of(request)},
        status=status,
        headers={"WWW-Authenticate": challenge, "Cache-Control": "no-store"},
    )


def _public_when_read_literally(gw: Gateway, host: str, raw_path: str) -> bool:
    """With ``;`` parameters in the path, a request is anonymous only if the literal reading is public too."""
    literal = matching_path(raw_path, strip_params=False)
    if literal is None:
        return False
    try:
        route = gw.routes.match(host, literal)
    except AmbiguousRoute:
        return False
    return route is not None and route.admits_anonymous(literal)


def login_target(route: Route, method: str, raw_path_qs: str) -> str:
    """Where sign-in starts for ``route``: its company's login page, or the chooser; the return path is
    the request's own for a GET/HEAD (a POST's body cannot be replayed after the round trip)."""
    rd = raw_path_qs if method in ("GET", "HEAD") else "/"
    code = route.login_code
    return login_path(code, rd) if code else paths.with_return_to(paths.LOGIN, rd)


def forbidden(request: web.Request, session: Session, reason: str) -> web.StreamResponse:
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

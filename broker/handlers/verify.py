"""``/.auth/verify``: forward-auth for an existing ingress (nginx, ingress-nginx, Traefik, Envoy, Caddy).

The ingress asks, before serving a request itself, "who is this, and may they?". The broker answers for
the *original* request (``proxy/original.py``) with the same stages as its own proxy mode
(``handlers/access.py``: route, session, policy), so one config can mix both modes:

- **200**: allowed; the identity headers (signed assertion for the original route's audience, and the
  route's plain headers) are in the answer for the ingress to copy upstream;
- **401** with ``X-Broker-Login`` (the absolute login URL, for nginx's ``error_page 401``), or **302** to
  that login for ingresses that pass redirects through (Traefik, Caddy): per route (``verify_login``) or
  by ``?login=redirect|status`` on the verify URL; API clients always get 401;
- **403** with the reason (policy, an unrouted host or an ambiguous path: deny is the safe default);
- **400** and an audit event when the caller is not in ``server.trusted_proxies``: anyone else could
  describe a request it is not making. Without ``trusted_proxies`` configured, verify answers nobody.
"""

from __future__ import annotations

import logging

from aiohttp import web

from broker.gateway import Gateway, gateway_of
from broker.handlers.access import (
    Ambiguous,
    Outcome,
    admit,
    bearer_refusal,
    find_route,
    forbidden,
    login_target,
)
from broker.http import paths
from broker.http.responses import ROUTE_LABEL_KEY, error_response, wants_html
from broker.ops.events import audit
from broker.proxy.boundary import is_websocket_upgrade
from broker.proxy.original import OriginalRequest, original_request

log = logging.getLogger(__name__)

LOGIN_HEADER = "X-Broker-Login"
LOGIN_MODES = frozenset({"status", "redirect"})
NO_STORE = {"Cache-Control": "no-store"}


async def verify(request: web.Request) -> web.StreamResponse:
    """Decide for the original request an ingress describes; the body of the check is never read."""
    gw = gateway_of(request)
    if not gw.boundary.trusts(request.remote):
        # Only an ingress may describe "the original request": believing anyone else would let a client
        # pose as another host or path. Logged as an audit event: it is a probe or a misconfiguration.
        audit("forward_auth_refused", why="caller is not in server.trusted_proxies", peer=request.remote)
        return error_response(
            request,
            400,
            "Bad request",
            "Forward-auth answers only the configured ingress (server.trusted_proxies).",
            "untrusted_forward_auth_caller",
        )
    suffix = request.raw_path.split("?", 1)[0][len(paths.VERIFY) :]
    original = original_request(request.headers, request.method, request.host, suffix, gw.boundary.scheme)
    if original is None:
        return error_response(
            request,
            400,
            "Bad request",
            "The ingress did not describe the original request (X-Original-URL or X-Forwarded-Uri).",
            "bad_forward_auth_request",
        )
    return await _decide(gw, request, original)


async def _decide(gw: Gateway, request: web.Request, original: OriginalRequest) -> web.StreamResponse:
    """The proxy mode's stages on the original request, answered the way ingresses read them."""
    try:
        route, path = find_route(gw, original.host, original.raw_path)
    except Ambiguous:
        return _denied(request, "ambiguous_path", "this address could be read as another one")
    request[ROUTE_LABEL_KEY] = route.label if route is not None else "unrouted"
    if route is None:
        return _denied(request, "no_route", "this address is not served by the gateway")
    admission = await admit(gw, request, route, original.host, path, original.raw_path)
    if admission.outcome is Outcome.LOGIN_REQUIRED:
        target = original.origin + login_target(route, original.method, original.target)
        asked = request.query.get("login", "")
        mode = asked if asked in LOGIN_MODES else route.config.verify_login
        return _login_required(request, original, target, redirect=mode == "redirect")
    if admission.outcome in (Outcome.INVALID_TOKEN, Outcome.INSUFFICIENT_SCOPE):
        return bearer_refusal(request, route, admission)
    if admission.outcome is Outcome.FORBIDDEN:
        assert admission.session is not None
        return forbidden(request, admission.session, admission.reason)
    headers = dict(NO_STORE)
    if admission.session is not None and not admission.anonymous:
        headers.update(gw.identity.for_request(admission.session, route, original.host, gw.clock()))
    return web.Response(status=200, headers=headers)


def _login_required(
    request: web.Request, original: OriginalRequest, target: str, *, redirect: bool
) -> web.StreamResponse:
    """A browser's page load: 302 to the login (redirect mode) or 401 naming it; anyone else: plain 401."""
    page_load = original.method in ("GET", "HEAD") and not is_websocket_upgrade(request.headers)
    browser = page_load and wants_html(request)
    if browser and redirect:
        return web.Response(status=302, headers={"Location": target, **NO_STORE})
    response = error_response(
        request, 401, "Sign-in required", "Sign in to use this application.", "login_required"
    )
    response.headers["WWW-Authenticate"] = 'Broker realm="entra-broker"'
    if browser:
        # nginx cannot pass a 302 through auth_request: its error_page 401 redirects to this URL instead.
        response.headers[LOGIN_HEADER] = target
    return response


def _denied(request: web.Request, code: str, reason: str) -> web.StreamResponse:
    """403 for what the gateway cannot vouch for (deny is what every ingress understands)."""
    log.info("forward-auth denied", extra={"why": code})
    return error_response(request, 403, "Access denied", f"Access denied: {reason}.", code)

"""``/.auth/logout``: GET asks to confirm, POST (with the session's CSRF token) signs out; and Entra's
front-channel logout.

A GET never signs anyone out, so a cross-site ``<img src=/.auth/logout>`` cannot. After signing out the
page offers Entra's end_session too, because other apps of the user keep their Microsoft session.
"""

from __future__ import annotations

import hmac
import logging
from urllib.parse import urlencode

from aiohttp import web

from broker.errors import IdentityProviderUnavailable
from broker.gateway import Gateway, gateway_of
from broker.handlers.session import current_session
from broker.http import paths
from broker.http.pages import views
from broker.http.responses import request_id_of
from broker.oidc.verifier import allowed_tenants, source_of
from broker.ops.events import audit
from broker.sessions.manager import sid_index
from broker.sessions.model import Session

log = logging.getLogger(__name__)


async def confirm(request: web.Request) -> web.StreamResponse:
    """GET /.auth/logout."""
    gw = gateway_of(request)
    session = await current_session(gw, request)
    if session is None:
        return views.signed_out(None, paths.LOGIN, request_id_of(request))
    return views.logout_confirm(
        session.csrf, session.name or session.preferred_username, request_id_of(request)
    )


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /.auth/logout: delete the session, clear the cookie, offer Microsoft sign-out."""
    gw = gateway_of(request)
    session = await current_session(gw, request)
    form = await request.post()
    if session is not None:
        if not hmac.compare_digest(str(form.get("csrf", "")).encode(), session.csrf.encode()):
            log.warning("logout without a valid CSRF token", extra={"event": "logout_csrf_rejected"})
            return views.simple(
                "Please confirm again",
                "This sign-out request could not be verified.",
                403,
                request_id_of(request),
                link=(paths.LOGOUT, "Sign out"),
            )
        ticket = gw.cookie.read(request)
        if ticket:
            await gw.sessions.delete(ticket)
        audit("logout", who=session.user_key, company=session.login_code)
    tenant = gw.tenant(session.login_code) if session is not None else None
    mode = tenant.entra_logout if tenant is not None else "never"
    entra_url = (
        await _entra_logout_url(gw, request, session) if session is not None and mode != "never" else None
    )
    if entra_url is not None and mode == "always":
        response: web.StreamResponse = web.Response(
            status=303, headers={"Location": entra_url, "Cache-Control": "no-store"}
        )
    else:
        login_url = paths.company_login(session.login_code) if session is not None else paths.LOGIN
        response = views.signed_out(entra_url, login_url, request_id_of(request))
    gw.cookie.clear(response)
    return response


async def _entra_logout_url(gw: Gateway, request: web.Request, session: Session) -> str | None:
    """Entra's end_session URL: ``client_id``, our post-logout page and the user's ``logout_hint``, if known.

    ``client_id`` lets a provider following OpenID Connect RP-Initiated Logout 1.0 (section 2) tell which
    client asks, and so which registered ``post_logout_redirect_uri`` to check. ``id_token_hint`` is not
    sent: sessions do not keep the ID token (about 1.5 KB more per record would push a session with
    Entra-sized tokens past 4 KB in Redis), and Entra needs none of it with ``logout_hint``.
    """
    tenant = gw.tenant(session.login_code)
    if tenant is None:
        return None
    try:
        metadata = await gw.discovery.metadata(source_of(tenant))
    except IdentityProviderUnavailable:
        return None
    if metadata.end_session_endpoint is None:
        return None
    params = {
        "client_id": tenant.client_id,
        "post_logout_redirect_uri": gw.origin_for(request) + paths.LOGGED_OUT,
    }
    if session.login_hint:
        params["logout_hint"] = session.login_hint
    return f"{metadata.end_session_endpoint}?{urlencode(params)}"


async def done(request: web.Request) -> web.StreamResponse:
    """GET /.auth/logout/done: where Entra returns after its own sign-out."""
    return views.simple(
        "You are signed out",
        "You are signed out of this application and of Microsoft.",
        200,
        request_id_of(request),
        link=(paths.LOGIN, "Sign in again"),
    )


async def frontchannel(request: web.Request) -> web.StreamResponse:
    """GET /.auth/frontchannel-logout[/{code}]?sid=…: Entra signs the user out of every app at once.

    Entra calls this from an iframe on its own sign-out page with only ``sid`` (ENTRA.md). The broker
    deletes every session created from that Entra session and answers an empty 200 page that Microsoft's
    page may frame. ``{code}`` narrows the search to one company; without it every company is tried.
    """
    gw = gateway_of(request)
    sid = request.query.get("sid", "")
    code = request.match_info.get("code")
    tenants = [gw.tenant(code)] if code else list(gw.config.tenants.values())
    revoked = 0
    authorities = set()
    if sid and len(sid) <= 128:
        for tenant in tenants:
            if tenant is None:
                continue
            authorities.add(tenant.authority.rstrip("/"))
            try:
                tids = allowed_tenants(await gw.discovery.metadata(source_of(tenant)), tenant)
            except IdentityProviderUnavailable:
                tids = frozenset({tenant.tenant_id.lower()})
            for tid in tids:
                revoked += await gw.sessions.revoke_index(sid_index(tid, sid))
    if revoked:
        audit("session_revoked", company=code, why="Entra front-channel logout", count=revoked)
    frame_ancestors = " ".join(sorted(authorities)) or "'none'"
    return web.Response(
        text="<!doctype html><title>Signed out</title>",
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": f"default-src 'none'; frame-ancestors {frame_ancestors}",
        },
    )

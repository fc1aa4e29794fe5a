"""``/.auth/logout``: GET asks to confirm, POST (with the session's CSRF token) signs out.

A GET never signs anyone out, so a cross-site ``<img src=/.auth/logout>`` cannot. After signing out the
page offers Entra's end_session too, because other apps of the user keep their Microsoft session.
"""

from __future__ import annotations

import hmac
import logging
from urllib.parse import urlencode

from aiohttp import web

from broker.errors import IdentityProviderUnavailable
from broker.oidc.verifier import source_of
from broker.pages import views
from broker.runtime import Gateway, gateway_of, request_id_of
from broker.sessions.model import Session

log = logging.getLogger(__name__)
LOGGED_OUT_PATH = "/.auth/logout/done"


async def confirm(request: web.Request) -> web.StreamResponse:
    """GET /.auth/logout."""
    gw = gateway_of(request)
    session = await gw.current_session(request)
    if session is None:
        return views.signed_out(None, "/.auth/login", request_id_of(request))
    return views.logout_confirm(
        session.csrf, session.name or session.preferred_username, request_id_of(request)
    )


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /.auth/logout: delete the session, clear the cookie, offer Microsoft sign-out."""
    gw = gateway_of(request)
    session = await gw.current_session(request)
    form = await request.post()
    if session is not None:
        if not hmac.compare_digest(str(form.get("csrf", "")).encode(), session.csrf.encode()):
            log.warning("logout without a valid CSRF token", extra={"event": "logout_csrf_rejected"})
            return views.simple(
                "Please confirm again",
                "This sign-out request could not be verified.",
                403,
                request_id_of(request),
                link=("/.auth/logout", "Sign out"),
            )
        ticket = gw.cookie.read(request)
        if ticket:
            await gw.sessions.delete(ticket)
        log.info("logout", extra={"event": "logout", "company": session.login_code, "user": session.user_key})
    entra_url = await _entra_logout_url(gw, request, session) if session is not None else None
    login_url = f"/.auth/login/{session.login_code}" if session is not None else "/.auth/login"
    response = views.signed_out(entra_url, login_url, request_id_of(request))
    gw.cookie.clear(response)
    return response


async def _entra_logout_url(gw: Gateway, request: web.Request, session: Session) -> str | None:
    """Entra's end_session URL with our post-logout page and the user's ``logout_hint``, if known."""
    tenant = gw.tenant(session.login_code)
    if tenant is None:
        return None
    try:
        metadata = await gw.discovery.metadata(source_of(tenant))
    except IdentityProviderUnavailable:
        return None
    if metadata.end_session_endpoint is None:
        return None
    params = {"post_logout_redirect_uri": gw.origin_for(request) + LOGGED_OUT_PATH}
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
        link=("/.auth/login", "Sign in again"),
    )

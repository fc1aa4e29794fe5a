"""RP-initiated logout and the ``error_uri`` lookup page."""

from __future__ import annotations

import logging

from aiohttp import web

from devidp.context import DEVIDP, NO_STORE, Authority, DevIdp, html_error
from devidp.errors import AadstsError
from devidp.pages import error_lookup_page, index_page, signed_out_page

logger = logging.getLogger(__name__)


async def logout(request: web.Request) -> web.Response:
    """GET or POST /{tenant}/oauth2/v2.0/logout (also multi-tenant): return only to registered URIs."""
    idp = request.app[DEVIDP]
    params = dict(request.query)
    if request.method == "POST":
        params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    try:
        authority = idp.authority_of(request)
    except AadstsError as exc:
        return html_error(idp, request, exc)
    target = params.get("post_logout_redirect_uri")
    # An unregistered target would make the IdP an open redirector; Entra then just shows its page.
    if target and _accepts(idp, authority, target):
        logger.info("signed out, returning to the app", extra={"authority": authority.base})
        return web.Response(status=302, headers={"Location": target, **NO_STORE})
    logger.info("signed out", extra={"authority": authority.base, "redirect_rejected": bool(target)})
    return web.Response(text=signed_out_page(), content_type="text/html", headers=NO_STORE)


def _accepts(idp: DevIdp, authority: Authority, target: str) -> bool:
    if authority.tenant is not None:
        return authority.tenant.accepts_post_logout_redirect_uri(target)
    # At /organizations and /common only the multi-tenant apps' registrations count.
    clients = (c for t in idp.config.tenants for c in t.clients if c.multi_tenant)
    return any(c.accepts_post_logout_redirect_uri(target) for c in clients)


async def index(request: web.Request) -> web.Response:
    """GET /: the tenants and users this dev IdP serves (the README and the demo banner link here)."""
    idp = request.app[DEVIDP]
    return web.Response(text=index_page(idp.public_url, idp.config.tenants), content_type="text/html")


async def error_lookup(request: web.Request) -> web.Response:
    """GET /error?code=nnn: where every ``error_uri`` points."""
    code = request.query.get("code", "")
    if not code.isdigit():
        raise web.HTTPNotFound
    return web.Response(text=error_lookup_page(code), content_type="text/html")

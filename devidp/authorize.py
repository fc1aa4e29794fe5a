"""The authorize endpoint: show the account picker, then send a code (or an error) back to the app."""

from __future__ import annotations

import logging
import uuid
from urllib.parse import urlencode, urlsplit, urlunsplit

from aiohttp import web

from devidp import errors
from devidp.authorize_request import (
    AuthorizeRequest,
    RedirectedError,
    ReplyTarget,
    parse_authorize_request,
)
from devidp.context import DEVIDP, NO_STORE, DevIdp, html_error
from devidp.errors import AadstsError
from devidp.failures import AUTHORIZE_ERRORS
from devidp.pages import (
    CANCEL_FIELD,
    USERNAME_FIELD,
    form_post_page,
    multi_tenant_sign_in_page,
    sign_in_page,
)
from devidp.store import CodeGrant

logger = logging.getLogger(__name__)


async def authorize_get(request: web.Request) -> web.Response:
    """GET /{tenant}/oauth2/v2.0/authorize: validate and show the sign-in page (choosing needs a POST)."""
    params = [(k, v) for k, v in request.query.items() if k not in (USERNAME_FIELD, CANCEL_FIELD)]
    return _authorize(request, params, username=None, cancelled=False)


async def authorize_post(request: web.Request) -> web.Response:
    """POST /{tenant}/oauth2/v2.0/authorize: an account was picked (or a form-posted authorize request)."""
    form = await request.post()
    params = [
        (k, v) for k, v in form.items() if isinstance(v, str) and k not in (USERNAME_FIELD, CANCEL_FIELD)
    ]
    username = form.get(USERNAME_FIELD)
    return _authorize(
        request,
        params,
        username=username if isinstance(username, str) else None,
        cancelled=CANCEL_FIELD in form,
    )


def _authorize(
    request: web.Request, params: list[tuple[str, str]], *, username: str | None, cancelled: bool
) -> web.Response:
    idp = request.app[DEVIDP]
    try:
        authority = idp.authority_of(request)
        # First occurrence wins, as with a query string read by most servers; every pair is echoed back.
        first: dict[str, str] = {}
        for key, value in params:
            first.setdefault(key, value)
        authz = parse_authorize_request(idp, authority, first)
    except AadstsError as exc:
        return html_error(idp, request, exc)
    except RedirectedError as exc:
        return _deliver_error(idp, request, exc.error, exc.target)

    if cancelled:
        return _deliver_error(idp, request, errors.user_cancelled(), authz.target)
    if authz.prompt == "none":
        # The dev IdP keeps no session cookie of its own, so a silent sign-in can never succeed.
        return _deliver_error(idp, request, errors.login_required(), authz.target)
    if username is None:
        return _sign_in_page(idp, request, authz, params)
    return _sign_in(idp, request, authz, username)


def _sign_in_page(
    idp: DevIdp, request: web.Request, authz: AuthorizeRequest, params: list[tuple[str, str]]
) -> web.Response:
    app_name = authz.client.display_name or authz.client.client_id
    tenant = authz.authority.tenant
    if tenant is None:
        # /organizations and /common: every directory's users may sign in, none comes first.
        page = multi_tenant_sign_in_page(
            app_name=app_name, action=request.path, params=params, tenants=idp.config.tenants
        )
    else:
        page = sign_in_page(
            tenant=tenant,
            app_name=app_name,
            action=request.path,
            params=params,
            other_tenants=[t for t in idp.config.tenants if t is not tenant],
        )
    return web.Response(text=page, content_type="text/html", headers=_page_headers())


def _sign_in(idp: DevIdp, request: web.Request, authz: AuthorizeRequest, username: str) -> web.Response:
    tenant = authz.authority.tenant
    found = idp.config.find_user(username)
    if found is None:
        return html_error(idp, request, errors.user_not_found(username, authz.authority.name))
    home, user = found
    if tenant is not None and home is not tenant:
        err = errors.user_from_other_tenant(
            user.username, idp.issuer(home), tenant.display_name, authz.client.client_id
        )
        return _deliver_error(idp, request, err, authz.target)
    if user.authorize_error is not None:
        # A configured refusal (no assignment, no consent, Conditional Access, MFA): no code is issued.
        err = AUTHORIZE_ERRORS[user.authorize_error](authz.client, user)
        return _deliver_error(idp, request, err, authz.target)
    grant = CodeGrant(
        # The user's home tenant: the tokens carry it, whichever authority the sign-in went through.
        tenant_id=home.tenant_id,
        client_id=authz.client.client_id,
        redirect_uri=authz.target.redirect_uri,
        code_challenge=authz.code_challenge,
        nonce=authz.nonce,
        scopes=authz.scopes,
        oid=user.oid,
        sid=str(uuid.uuid4()),
    )
    code = idp.store.issue_code(grant)
    logger.info(
        "authorization code issued",
        extra={"tenant_id": home.tenant_id, "client_id": authz.client.client_id, "oid": user.oid},
    )
    return _deliver(authz.target, {"code": code, "state": authz.state})


def _deliver_error(idp: DevIdp, request: web.Request, err: AadstsError, target: ReplyTarget) -> web.Response:
    logger.info("authorize error sent to the app", extra={"aadsts": err.code, "error": err.error})
    fields = errors.redirect_fields(err, idp.error_context(request), idp.public_url, target.state)
    return _deliver(target, fields)


def _deliver(target: ReplyTarget, fields: dict[str, str]) -> web.Response:
    """Answer in the requested response mode (OAuth 2.0 Multiple Response Types / Form Post)."""
    if target.response_mode == "form_post":
        page = form_post_page(target.redirect_uri, fields)
        return web.Response(text=page, content_type="text/html", headers=_page_headers())
    parts = urlsplit(target.redirect_uri)
    encoded = urlencode(fields)
    if target.response_mode == "fragment":
        location = urlunsplit(parts._replace(fragment=encoded))
    else:
        query = f"{parts.query}&{encoded}" if parts.query else encoded
        location = urlunsplit(parts._replace(query=query))
    return web.Response(status=302, headers={"Location": location, **NO_STORE})


def _page_headers() -> dict[str, str]:
    # Sign-in and form_post pages must not be framed (clickjacking). No Referrer-Policy: no-referrer here,
    # because it would make the form_post callback arrive with "Origin: null", unlike Entra's.
    return {**NO_STORE, "X-Frame-Options": "DENY"}

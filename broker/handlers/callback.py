"""``/.auth/callback``: check the state, redeem the code, consume the state, validate the ID token, create
the session.

With ``response_mode=form_post`` Entra POSTs here cross-site, so SameSite=Lax cookies are not sent: all
login context lives server-side under the ``state`` value (ENTRA.md). The session gets a fresh id,
never one the browser chose (no session fixation).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from broker.config.schema import TenantConfig
from broker.errors import GroupsOverageError, IdentityProviderRejected, InvalidToken
from broker.gateway import Gateway, gateway_of
from broker.handlers.login import binding_hash, login_path
from broker.http import paths
from broker.http.pages import views
from broker.http.responses import request_id_of
from broker.identity.claim_keeping import kept_claims
from broker.identity.policy import identity_from_claims, string_list
from broker.oidc import errors as aadsts
from broker.oidc.client import redeem_code
from broker.oidc.groups import fetch_groups, has_group_overage
from broker.oidc.verifier import source_of, verify_id_token
from broker.ops.events import audit
from broker.ops.metrics import METRICS
from broker.sessions.model import LoginState, Session
from broker.sessions.pending_logins import MAX_STATE_LENGTH
from broker.sessions.sealing import SealKey

log = logging.getLogger(__name__)

# Entra's codes are around 1-2 KB; anything much longer is not a code (and is never sent on to the IdP).
MAX_CODE_LENGTH = 8192


async def callback(request: web.Request) -> web.StreamResponse:
    """GET or POST /.auth/callback."""
    gw = gateway_of(request)
    params: Mapping[str, Any] = await request.post() if request.method == "POST" else request.query
    binding = gw.cookie.read_login_binding(request)
    state_value = str(params.get("state", ""))
    well_formed = len(state_value) <= MAX_STATE_LENGTH and SealKey.parse(state_value) is not None
    if binding is None and request.method == "POST" and params.get("bounced") != "1" and well_formed:
        # A cross-site form_post arrives without our SameSite=Lax cookies: re-post it same-site first.
        return views.callback_bounce({k: str(v) for k, v in params.items()}, request_id_of(request))
    # Read, not consume: the browser binding is checked first (anyone who merely saw a state must not be
    # able to spend it), and the state is consumed only once its code was redeemed (see ``_complete``).
    login = await gw.pending_logins.read(state_value, gw.clock()) if well_formed else None
    if login is None:
        return _state_unusable(request)
    tenant = gw.tenant(login.login_code)
    retry = login_path(login.login_code, login.return_to)
    if binding is None or not hmac.compare_digest(binding_hash(binding), login.browser_binding):
        # Login CSRF: this state was started by another browser (e.g. an attacker's, whose Entra answer
        # is being replayed into the victim's browser to sign the victim into the attacker's account).
        audit("login_failure", company=login.login_code, why="login state used in another browser")
        _count(request, login.login_code, "browser_mismatch")
        return views.simple(
            "Please start the sign-in in this browser",
            "This sign-in was started in another browser, so it cannot be completed here. Start again.",
            400,
            request_id_of(request),
            link=(retry, "Start again"),
        )
    if tenant is None:
        return views.simple(
            "Company not found", "This company can no longer sign in here.", 400, request_id_of(request)
        )
    if "error" in params:
        # Entra ended this sign-in: the state is spent (a new attempt starts a new login).
        await gw.pending_logins.take(state_value, gw.clock())
        return _entra_error(
            request,
            login,
            retry,
            aadsts.bounded_error(str(params["error"])),
            aadsts.bounded_description(str(params.get("error_description", ""))),
        )
    code = str(params.get("code", ""))
    if not code or len(code) > MAX_CODE_LENGTH:
        return views.simple(
            "Please sign in again",
            "The sign-in answer was incomplete.",
            400,
            request_id_of(request),
            link=(retry, "Try again"),
        )
    return await _complete(request, gw, tenant, login, state_value, code, retry)


def _state_unusable(request: web.Request) -> web.StreamResponse:
    """The answer to a callback whose state is unknown, already used, evicted or expired."""
    audit("login_failure", why="state unknown, replayed or expired")
    _count(request, "unknown", "state")
    return views.simple(
        "Please sign in again",
        "Your sign-in took too long or this sign-in link was already used. Start again.",
        400,
        request_id_of(request),
        link=(paths.LOGIN, "Start again"),
    )


async def _complete(
    request: web.Request,
    gw: Gateway,
    tenant: TenantConfig,
    login: LoginState,
    state: str,
    code: str,
    retry: str,
) -> web.StreamResponse:
    # Until the code is redeemed the state stays: if the IdP is unreachable (a 503 from the middleware),
    # the user's retry of the same callback works. A code is single-use at the IdP, so a replay of an
    # already-redeemed code fails there whatever the state says; and PKCE ties the code to this state's
    # verifier, so another login's code fails too.
    metadata = await gw.discovery.metadata(source_of(tenant))
    try:
        tokens = await redeem_code(
            gw.idp_http,
            metadata,
            tenant,
            gw.credentials[login.login_code],
            code=code,
            redirect_uri=login.redirect_uri,
            code_verifier=login.code_verifier,
            now=gw.clock(),
        )
    except IdentityProviderRejected as exc:
        await gw.pending_logins.take(state, gw.clock())  # a refused code cannot be retried: spent
        return _entra_error(
            request,
            login,
            retry,
            aadsts.bounded_error(exc.error),
            aadsts.bounded_description(exc.description),
            exc.error_codes,
            exc.correlation_id,
        )
    now = gw.clock()
    if await gw.pending_logins.take(state, now) is None:
        # Consumed atomically (GETDEL on Redis) after a successful redemption: of two concurrent callbacks
        # with the same state (and each its own valid code), exactly one creates a session.
        return _state_unusable(request)
    try:
        claims = await verify_id_token(
            gw.discovery, tenant, metadata, tokens.id_token, nonce=login.nonce, now=now
        )
    except InvalidToken as exc:
        audit("login_failure", company=login.login_code, why=f"ID token rejected: {exc}")
        _count(request, login.login_code, "invalid_token")
        return views.simple(
            "Sign-in could not be verified",
            "Microsoft's answer did not pass the gateway's checks, so you were not signed in. "
            "If you chose an account of another company, sign in with your account at this company.",
            400,
            request_id_of(request),
            link=(retry, "Try again"),
        )
    groups = string_list(claims.get("groups"))
    if has_group_overage(claims):
        resolved = await _overage_groups(request, gw, tenant, login, tokens.access_token, retry)
        if isinstance(resolved, web.StreamResponse):
            return resolved
        groups = resolved
    session = _session_from_claims(login.login_code, tenant, claims, groups, tokens.refresh_token)
    if tenant.roles.require_role and not session.roles:
        audit("login_failure", who=session.user_key, company=login.login_code, why="no role assigned")
        _count(request, login.login_code, "no_role")
        return views.simple(
            "You don't have a role in this application yet",
            "You signed in, but your account has no role in this application. Ask your administrator to "
            "assign you a role (in Entra: Enterprise applications > Users and groups).",
            403,
            request_id_of(request),
            link=(retry, "Try again"),
        )
    previous = gw.cookie.read(request)
    if previous:
        # A new login replaces whatever session this browser had (never reuse or keep a stale one).
        await gw.sessions.delete(previous)
    ticket = await gw.sessions.create(session, now)
    audit("login_success", who=session.user_key, company=login.login_code, roles=",".join(session.roles))
    _count(request, login.login_code, "success")
    # 303 so the browser follows with a GET even after Entra's form_post.
    response = web.Response(status=303, headers={"Location": login.return_to, "Cache-Control": "no-store"})
    gw.cookie.set(response, ticket, int(gw.config.sessions.lifetime))
    return response


def _count(request: web.Request, company: str, result: str, code: int | None = None) -> None:
    """``broker_logins_total``: every label from a closed set (login codes, results, explained AADSTS)."""
    if METRICS in request.app:
        request.app[METRICS].logins.labels(company, result, aadsts.metric_label(code)).inc()


async def _overage_groups(
    request: web.Request,
    gw: Gateway,
    tenant: TenantConfig,
    login: LoginState,
    access_token: str | None,
    retry: str,
) -> list[str] | web.StreamResponse:
    """Groups of a user with too many for the token: from Graph, or a clear refusal. Never "no groups"."""
    if tenant.groups_overage == "graph" and access_token:
        try:
            return await fetch_groups(gw.idp_http, tenant.graph_url, access_token)
        except GroupsOverageError as exc:
            log.warning("group overage lookup failed: %s", exc, extra={"company": login.login_code})
    audit("login_failure", company=login.login_code, why="group overage and groups_overage is deny")
    _count(request, login.login_code, "groups_overage")
    return views.simple(
        "Too many groups to sign you in",
        "Your account belongs to more groups than the sign-in token can carry, and this company's "
        "gateway is set not to look them up. Ask your administrator (gateway setting groups_overage, or "
        "assign access through app roles instead of groups).",
        403,
        request_id_of(request),
        link=(retry, "Try again"),
    )


def _session_from_claims(
    code: str,
    tenant: TenantConfig,
    claims: Mapping[str, Any],
    groups: list[str],
    refresh_token: str | None,
) -> Session:
    """The session for a validated token. Identity is ``tid`` + ``oid``; email and UPN are display only.

    The ID token itself is not kept: its claims are, and nothing reads it again (Entra's logout takes the
    ``login_hint`` claim), so it would only add 1.5 KB of token material to every record in Redis."""
    return Session(
        login_code=code,
        tid=str(claims["tid"]),
        oid=str(claims["oid"]),
        **identity_from_claims(tenant.roles, claims, groups),
        claims=kept_claims(tenant.keep_claims, claims),
        sid=claims.get("sid") if isinstance(claims.get("sid"), str) else None,
        login_hint=claims.get("login_hint") if isinstance(claims.get("login_hint"), str) else None,
        refresh_token=refresh_token,
        id_token_expires_at=float(claims["exp"]),
        csrf=secrets.token_urlsafe(24),
    )


def _entra_error(
    request: web.Request,
    login: LoginState,
    retry: str,
    error: str,
    description: str,
    error_codes: tuple[int, ...] = (),
    correlation_id: str = "",
) -> web.StreamResponse:
    """An error Entra reported (on the callback or from the token endpoint), explained."""
    code = aadsts.aadsts_code(description, error_codes)
    audit("login_failure", company=login.login_code, why=f"identity provider: {error}", aadsts=code)
    _count(request, login.login_code, "idp_error", code)
    return views.login_error(
        aadsts.explain(error, code),
        code=code,
        error=error,
        description=description,
        correlation_id=correlation_id or aadsts.correlation_id(description),
        retry_url=retry,
        request_id=request_id_of(request),
    )

"""The token endpoint: authenticate the client, redeem a code or refresh token, answer tokens as JSON."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from devidp import errors
from devidp.api_tokens import DEFAULT_SUFFIX, app_only_claims, delegated_claims, find_api
from devidp.client_auth import authenticate_client, basic_credentials
from devidp.context import DEVIDP, NO_STORE, Authority, DevIdp, json_error, json_response
from devidp.errors import AadstsError
from devidp.forgery import FaultSetting, sign_id_token
from devidp.model import DevClient, DevTenant, DevUser
from devidp.store import (
    REFRESH_TOKEN_LIFETIME,
    GrantAlreadyUsed,
    GrantExpired,
    GrantUnknown,
    RefreshGrant,
)
from devidp.tokens import (
    TOKEN_LIFETIME,
    SignIn,
    access_token_claims,
    granted_scopes,
    id_token_claims,
    sign,
)

logger = logging.getLogger(__name__)


async def token(request: web.Request) -> web.Response:
    """POST /{tenant}/oauth2/v2.0/token (also /organizations and /common)."""
    idp = request.app[DEVIDP]
    try:
        authority = idp.authority_of(request)
        params = _single_valued(await request.post())
        grant_type = _required(params, "grant_type")
        idp.stats.count_grant(grant_type)
        _, client = authenticate_client(idp, request, authority, params)
        if grant_type == "authorization_code":
            body = _redeem_code(idp, authority, client, params)
        elif grant_type == "client_credentials":
            body = _client_credentials(idp, authority, client, params)
        elif grant_type == "refresh_token":
            body, user = _refresh(idp, authority, client, params)
            if user.refresh_delay > 0:
                await asyncio.sleep(user.refresh_delay)
        else:
            raise errors.unsupported_grant_type(grant_type)
    except AadstsError as exc:
        logger.info("token request rejected", extra={"aadsts": exc.code, "error": exc.error})
        response = json_error(idp, request, exc)
        if exc.status == 401 and _sent_basic(request):
            # RFC 6749 5.2: a 401 to a client that tried HTTP Basic must carry WWW-Authenticate.
            response.headers["WWW-Authenticate"] = 'Basic realm="token"'
        return response
    return json_response(body, headers=NO_STORE)


def _sent_basic(request: web.Request) -> bool:
    try:
        return basic_credentials(request) is not None
    except AadstsError:
        return True


def _single_valued(form: Mapping[str, Any]) -> dict[str, str]:
    # RFC 6749 3.2: request parameters MUST NOT be included more than once.
    params: dict[str, str] = {}
    for key, value in form.items():  # a MultiDict yields a repeated key once per occurrence
        if key in params:
            raise errors.invalid_request(f"The parameter '{key}' is included more than once.")
        if isinstance(value, str):
            params[key] = value
    return params


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise errors.missing_parameter(name)
    return value


def _grant_matches(authority: Authority, client: DevClient, client_id: str, tenant_id: str) -> bool:
    """A grant is redeemable by the app it was issued to, at its user's tenant or a multi-tenant alias."""
    if client_id != client.client_id:
        return False
    return authority.tenant is None or authority.tenant.tenant_id == tenant_id


def _redeem_code(
    idp: DevIdp, authority: Authority, client: DevClient, params: Mapping[str, str]
) -> dict[str, Any]:
    code = _required(params, "code")
    redirect_uri = _required(params, "redirect_uri")
    verifier = _required(params, "code_verifier")
    try:
        grant = idp.store.redeem_code(code)
    except (GrantUnknown, GrantExpired):
        raise errors.code_expired() from None
    except GrantAlreadyUsed:
        raise errors.code_already_redeemed() from None
    if not _grant_matches(authority, client, grant.client_id, grant.tenant_id):
        raise errors.grant_invalid()
    # RFC 6749 4.1.3: the redirect_uri must be identical to the one in the authorization request.
    if redirect_uri != grant.redirect_uri:
        raise errors.reply_address_mismatch(redirect_uri, grant.redirect_uri)
    # RFC 7636 4.6: the verifier must hash to the challenge; compare in constant time.
    if not hmac.compare_digest(create_s256_code_challenge(verifier).encode(), grant.code_challenge.encode()):
        raise errors.code_verifier_mismatch()
    home, user = _current_user(idp, grant.tenant_id, grant.oid)
    logger.info(
        "authorization code redeemed", extra={"tenant_id": home.tenant_id, "client_id": client.client_id}
    )
    return _tokens(idp, home, client, user, grant.scopes, grant.sid, grant.nonce)


def _refresh(
    idp: DevIdp, authority: Authority, client: DevClient, params: Mapping[str, str]
) -> tuple[dict[str, Any], DevUser]:
    refresh_token = _required(params, "refresh_token")
    try:
        grant = idp.store.use_refresh_token(refresh_token)
    except GrantUnknown:
        raise errors.grant_invalid() from None
    except GrantExpired as exc:
        issued = errors.format_timestamp(exc.issued_at)
        raise errors.refresh_token_expired(issued, f"{REFRESH_TOKEN_LIFETIME / 86400:.0f}.00:00:00") from None
    if not _grant_matches(authority, client, grant.client_id, grant.tenant_id):
        raise errors.grant_invalid()
    home, user = _current_user(idp, grant.tenant_id, grant.oid)
    logger.info("refresh token redeemed", extra={"tenant_id": home.tenant_id, "client_id": client.client_id})
    # OIDC Core 12.2: a refreshed ID token carries no nonce.
    return _tokens(idp, home, client, user, grant.scopes, grant.sid, nonce=None), user


def _client_credentials(
    idp: DevIdp, authority: Authority, client: DevClient, params: Mapping[str, str]
) -> dict[str, Any]:
    """App-only: ``scope={App ID URI}/.default`` at a tenant's endpoint (never /organizations)."""
    scope = _required(params, "scope")
    if authority.tenant is None or not scope.endswith(DEFAULT_SUFFIX) or " " in scope:
        raise errors.invalid_request("client_credentials needs a tenant and one scope ending in '/.default'.")
    found = find_api(authority.tenant, scope)
    if found is None:
        raise errors.invalid_request(f"No application in the directory exposes the scope '{scope}'.")
    claims = app_only_claims(
        found[0], authority.tenant, idp.issuer(authority.tenant), client.client_id, idp.clock()
    )
    logger.info("client credentials granted", extra={"client_id": client.client_id})
    return {
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME,
        "ext_expires_in": TOKEN_LIFETIME,
        "access_token": sign(idp.keys, claims),
    }


def _current_user(idp: DevIdp, tenant_id: str, oid: str) -> tuple[DevTenant, DevUser]:
    # Claims come from the directory as it is now, so edits (renamed user, new roles) show up on refresh.
    home = idp.config.find_tenant_by_id(tenant_id)
    user = home.find_user_by_oid(oid) if home is not None else None
    if home is None or user is None:
        raise errors.grant_invalid()
    return home, user


def _access_claims(
    idp: DevIdp, tenant: DevTenant, client: DevClient, user: DevUser, sign_in: SignIn, now: float
) -> dict[str, Any]:
    """A sign-in that asked for an API's scopes gets a token for that API (Entra: one resource per token);
    otherwise one for Graph."""
    for scope in sign_in.scopes:
        found = find_api(tenant, scope)
        if found is not None:
            api_client = found[0]
            wanted = [f[1] for s in sign_in.scopes if (f := find_api(tenant, s)) and f[0] is api_client]
            return delegated_claims(
                api_client, tenant, idp.issuer(tenant), client.client_id, user, wanted, now
            )
    return access_token_claims(sign_in, now)


def _tokens(
    idp: DevIdp,
    tenant: DevTenant,
    client: DevClient,
    user: DevUser,
    scopes: tuple[str, ...],
    sid: str,
    nonce: str | None,
) -> dict[str, Any]:
    now = idp.clock()
    # Tokens always name the user's home tenant, even when the sign-in went through /organizations.
    graph = f"{idp.public_url}/graph"
    sign_in = SignIn(idp.issuer(tenant), tenant, client.client_id, user, scopes, sid, graph_url=graph)
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": " ".join(granted_scopes(scopes)),
        "expires_in": TOKEN_LIFETIME,
        "ext_expires_in": TOKEN_LIFETIME,
        "access_token": sign(idp.keys, _access_claims(idp, tenant, client, user, sign_in, now)),
    }
    # Entra issues refresh tokens only when offline_access was granted.
    if "offline_access" in scopes:
        body["refresh_token"] = idp.store.issue_refresh_token(
            RefreshGrant(tenant.tenant_id, client.client_id, scopes, user.oid, sid)
        )
    other = next((t.tenant_id for t in idp.config.tenants if t is not tenant), None)
    setting = FaultSetting(idp.public_url, other, now)
    claims = id_token_claims(sign_in, now, nonce)
    body["id_token"] = sign_id_token(user.token_fault, claims, idp.id_token_key(client), setting)
    return body

"""The token endpoint: authenticate the client, redeem a code or refresh token, answer tokens as JSON."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from broker.devidp import errors
from broker.devidp.context import DEVIDP, NO_STORE, DevIdp, json_error, json_response
from broker.devidp.errors import AadstsError
from broker.devidp.model import DevClient, DevTenant, DevUser
from broker.devidp.store import (
    REFRESH_TOKEN_LIFETIME,
    GrantAlreadyUsed,
    GrantExpired,
    GrantUnknown,
    RefreshGrant,
)
from broker.devidp.tokens import (
    TOKEN_LIFETIME,
    SignIn,
    access_token_claims,
    granted_scopes,
    id_token_claims,
    sign,
)

logger = logging.getLogger(__name__)

_MALFORMED_BASIC = "The Authorization header is not valid HTTP Basic credentials."


async def token(request: web.Request) -> web.Response:
    """POST /{tenant}/oauth2/v2.0/token."""
    idp = request.app[DEVIDP]
    try:
        tenant = idp.tenant_of(request)
        params = _single_valued(await request.post())
        grant_type = _required(params, "grant_type")
        client = _authenticate(request, tenant, params)
        if grant_type == "authorization_code":
            body = _redeem_code(idp, tenant, client, params)
        elif grant_type == "refresh_token":
            body = _refresh(idp, tenant, client, params)
        else:
            raise errors.unsupported_grant_type(grant_type)
    except AadstsError as exc:
        logger.info("token request rejected", extra={"aadsts": exc.code, "error": exc.error})
        response = json_error(idp, request, exc)
        if exc.status == 401 and _basic_credentials(request) is not None:
            # RFC 6749 5.2: a 401 to a client that tried HTTP Basic must carry WWW-Authenticate.
            response.headers["WWW-Authenticate"] = 'Basic realm="token"'
        return response
    return json_response(body, headers=NO_STORE)


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


def _basic_credentials(request: web.Request) -> tuple[str, str] | None:
    """HTTP Basic client credentials; RFC 6749 2.3.1 form-urlencodes the ID and secret before base64."""
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise errors.invalid_request(_MALFORMED_BASIC) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise errors.invalid_request(_MALFORMED_BASIC)
    return unquote_plus(client_id), unquote_plus(secret)


def _authenticate(request: web.Request, tenant: DevTenant, params: Mapping[str, str]) -> DevClient:
    secret: str | None
    basic = _basic_credentials(request)
    if basic is not None:
        client_id, secret = basic
        # RFC 6749 2.3: a client MUST NOT use more than one authentication method per request.
        if "client_secret" in params or "client_assertion" in params:
            raise errors.invalid_request("Client credentials were sent both in the header and in the body.")
        if params.get("client_id", client_id) != client_id:
            raise errors.invalid_request("The client_id in the body differs from the one in the header.")
    else:
        client_id = _required(params, "client_id")
        secret = params.get("client_secret")
    client = tenant.find_client(client_id)
    if client is None:
        raise errors.client_not_found(client_id, tenant.display_name)
    if secret is None:
        raise (
            errors.client_assertion_rejected()
            if "client_assertion" in params
            else errors.missing_client_credential()
        )
    if not hmac.compare_digest(secret.encode(), client.client_secret.encode()):
        raise errors.invalid_client_secret(client.client_id)
    return client


def _redeem_code(
    idp: DevIdp, tenant: DevTenant, client: DevClient, params: Mapping[str, str]
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
    if grant.client_id != client.client_id or grant.tenant_id != tenant.tenant_id:
        raise errors.grant_invalid()
    # RFC 6749 4.1.3: the redirect_uri must be identical to the one in the authorization request.
    if redirect_uri != grant.redirect_uri:
        raise errors.reply_address_mismatch(redirect_uri, grant.redirect_uri)
    # RFC 7636 4.6: the verifier must hash to the challenge; compare in constant time.
    if not hmac.compare_digest(create_s256_code_challenge(verifier).encode(), grant.code_challenge.encode()):
        raise errors.code_verifier_mismatch()
    user = _current_user(tenant, grant.oid)
    logger.info(
        "authorization code redeemed", extra={"tenant_id": tenant.tenant_id, "client_id": client.client_id}
    )
    return _tokens(idp, tenant, client, user, grant.scopes, grant.sid, grant.nonce)


def _refresh(idp: DevIdp, tenant: DevTenant, client: DevClient, params: Mapping[str, str]) -> dict[str, Any]:
    refresh_token = _required(params, "refresh_token")
    try:
        grant = idp.store.use_refresh_token(refresh_token)
    except GrantUnknown:
        raise errors.grant_invalid() from None
    except GrantExpired as exc:
        issued = errors.format_timestamp(exc.issued_at)
        raise errors.refresh_token_expired(issued, f"{REFRESH_TOKEN_LIFETIME / 86400:.0f}.00:00:00") from None
    if grant.client_id != client.client_id or grant.tenant_id != tenant.tenant_id:
        raise errors.grant_invalid()
    user = _current_user(tenant, grant.oid)
    logger.info(
        "refresh token redeemed", extra={"tenant_id": tenant.tenant_id, "client_id": client.client_id}
    )
    # OIDC Core 12.2: a refreshed ID token carries no nonce.
    return _tokens(idp, tenant, client, user, grant.scopes, grant.sid, nonce=None)


def _current_user(tenant: DevTenant, oid: str) -> DevUser:
    # Claims come from the directory as it is now, so edits (renamed user, new roles) show up on refresh.
    user = tenant.find_user_by_oid(oid)
    if user is None:
        raise errors.grant_invalid()
    return user


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
    sign_in = SignIn(idp.issuer(tenant), tenant, client.client_id, user, scopes, sid)
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": " ".join(granted_scopes(scopes)),
        "expires_in": TOKEN_LIFETIME,
        "ext_expires_in": TOKEN_LIFETIME,
        "access_token": sign(idp.keys, access_token_claims(sign_in, now)),
    }
    # Entra issues refresh tokens only when offline_access was granted.
    if "offline_access" in scopes:
        body["refresh_token"] = idp.store.issue_refresh_token(
            RefreshGrant(tenant.tenant_id, client.client_id, scopes, user.oid, sid)
        )
    body["id_token"] = sign(idp.keys, id_token_claims(sign_in, now, nonce))
    return body

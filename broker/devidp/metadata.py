"""Discovery document and JWKS, shaped like Entra's v2.0 metadata for a single tenant."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broker.devidp.context import DEVIDP, DevIdp, json_error, json_response
from broker.devidp.errors import AadstsError
from broker.devidp.model import DevTenant

# Entra lets clients cache metadata and keys for a day; the broker's JWKS cache relies on that TTL.
_METADATA_CACHE = {"Cache-Control": "max-age=86400"}

_SCOPES = ["openid", "profile", "email", "offline_access"]
_CLAIMS = [
    "sub", "iss", "aud", "exp", "iat", "nbf", "nonce", "preferred_username", "name", "tid", "oid", "ver",
    "email", "given_name", "family_name", "roles", "groups", "sid", "login_hint",
]  # fmt: skip


def discovery_document(idp: DevIdp, tenant: DevTenant) -> dict[str, Any]:
    """The OpenID Provider metadata; like Entra's: no PKCE methods listed and no back-channel logout."""
    oauth2 = "oauth2/v2.0"
    return {
        "token_endpoint": idp.endpoint(tenant, f"{oauth2}/token"),
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": idp.endpoint(tenant, "discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": _SCOPES,
        "issuer": idp.issuer(tenant),
        "request_uri_parameter_supported": False,
        "authorization_endpoint": idp.endpoint(tenant, f"{oauth2}/authorize"),
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": idp.endpoint(tenant, f"{oauth2}/logout"),
        "claims_supported": _CLAIMS,
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
    }


async def openid_configuration(request: web.Request) -> web.Response:
    """GET /{tenant}/v2.0/.well-known/openid-configuration."""
    idp = request.app[DEVIDP]
    try:
        tenant = idp.tenant_of(request)
    except AadstsError as exc:
        return json_error(idp, request, exc)
    return json_response(discovery_document(idp, tenant), headers=_METADATA_CACHE)


async def keys(request: web.Request) -> web.Response:
    """GET /{tenant}/discovery/v2.0/keys: the signing keys, shared by every tenant as Entra's are."""
    idp = request.app[DEVIDP]
    try:
        tenant = idp.tenant_of(request)
    except AadstsError as exc:
        return json_error(idp, request, exc)
    return json_response(idp.keys.jwks(idp.issuer(tenant)), headers=_METADATA_CACHE)

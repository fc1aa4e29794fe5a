"""Discovery document and JWKS, shaped like Entra's v2.0 metadata for a tenant or a multi-tenant alias."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from devidp.context import DEVIDP, Authority, DevIdp, json_error, json_response
from devidp.errors import AadstsError

# Entra lets clients cache metadata and keys for a day; the broker's JWKS cache relies on that TTL.
_METADATA_CACHE = {"Cache-Control": "max-age=86400"}

_SCOPES = ["openid", "profile", "email", "offline_access"]
_CLAIMS = [
    "sub", "iss", "aud", "exp", "iat", "nbf", "nonce", "preferred_username", "name", "tid", "oid", "ver",
    "email", "given_name", "family_name", "roles", "groups", "sid", "login_hint",
]  # fmt: skip


def discovery_document(idp: DevIdp, authority: Authority, appid: str | None = None) -> dict[str, Any]:
    """The OpenID Provider metadata; like Entra's: no PKCE methods listed and no back-channel logout."""
    oauth2 = "oauth2/v2.0"
    jwks_uri = idp.endpoint(authority, "discovery/v2.0/keys")
    if appid is not None:
        # Apps with claims mapping are told to fetch their keys with ?appid= (app-specific signing keys).
        jwks_uri += "?" + urlencode({"appid": appid})
    return {
        "token_endpoint": idp.endpoint(authority, f"{oauth2}/token"),
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": jwks_uri,
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": _SCOPES,
        "issuer": idp.authority_issuer(authority),
        "request_uri_parameter_supported": False,
        "authorization_endpoint": idp.endpoint(authority, f"{oauth2}/authorize"),
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": idp.endpoint(authority, f"{oauth2}/logout"),
        "claims_supported": _CLAIMS,
        "tenant_region_scope": "EU" if authority.tenant is not None else None,
        "cloud_instance_name": "microsoftonline.com",
    }


async def openid_configuration(request: web.Request) -> web.Response:
    """GET /{tenant}/v2.0/.well-known/openid-configuration (tenant, domain, organizations or common)."""
    idp = request.app[DEVIDP]
    idp.stats.discovery += 1
    try:
        authority = idp.authority_of(request)
    except AadstsError as exc:
        return json_error(idp, request, exc)
    document = discovery_document(idp, authority, request.query.get("appid"))
    return json_response(document, headers=_METADATA_CACHE)


async def keys(request: web.Request) -> web.Response:
    """GET /{tenant}/discovery/v2.0/keys[?appid=]: the shared keys, plus the app's own with ``appid``."""
    idp = request.app[DEVIDP]
    idp.stats.jwks += 1
    try:
        authority = idp.authority_of(request)
    except AadstsError as exc:
        return json_error(idp, request, exc)
    issuer = idp.authority_issuer(authority)
    jwks = idp.keys.jwks(issuer)
    found = idp.config.find_client_anywhere(request.query.get("appid", ""))
    if found is not None and found[1].app_specific_keys:
        # Published here and nowhere else, so only a relying party that asks with ?appid= can verify.
        own = idp.app_keys.for_app(found[1].client_id, idp.clock())
        jwks["keys"].insert(0, own.jwk(issuer))
    return json_response(jwks, headers=_METADATA_CACHE)

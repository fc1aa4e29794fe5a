"""Entra access-token validation for APIs (``Authorization: Bearer``), one named check per rule.

Pure, like ``tokens.py`` (whose key, algorithm, date and tenant checks it reuses): keys and clock are
parameters. Entra issues two token versions: v1 (``iss`` ``https://sts.windows.net/{tid}/``, ``aud`` the App
ID URI, ``appid``) and v2 (``iss`` ``…/{tid}/v2.0``, ``aud`` the app ID, ``azp``); both are accepted when the
route lists the audience. A delegated token carries ``scp`` (a user); an app-only token (client
credentials) carries ``roles`` and ``idtyp=app``, or no ``scp``.

Tokens meant for Microsoft Graph are refused by name: their signature cannot be verified by anyone but
Graph (the header holds a ``nonce`` that is hashed before signing), and they are not meant for this API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from broker.errors import InvalidToken
from broker.oidc.tokens import (
    UnknownSigningKey,
    check_lifetime,
    check_numeric_dates,
    check_tenant,
    read_header,
    verify_signature,
)

V1_ISSUER = "https://sts.windows.net/{tid}/"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_AUDIENCES = frozenset(
    {
        GRAPH_APP_ID,
        "https://graph.microsoft.com",
        "https://graph.microsoft.com/",
        "https://graph.windows.net",
        "https://graph.windows.net/",
        "00000002-0000-0000-c000-000000000000",  # Azure AD Graph
    }
)
REQUIRED_ACCESS_CLAIMS = ("iss", "aud", "exp", "iat", "tid", "oid")


@dataclass(frozen=True)
class ApiExpectations:
    """What a valid access token for one company and one route's API must say."""

    audiences: frozenset[str]
    v2_issuer: str  # the company's discovery issuer, ``{tenantid}`` substituted with the token's tid
    allowed_tenants: frozenset[str]
    clock_skew: float


@dataclass(frozen=True)
class AccessToken:
    """A validated caller: a user (delegated, ``scp``) or an application (app-only, ``roles``)."""

    tid: str
    oid: str
    client_id: str  # ``azp`` (v2) or ``appid`` (v1): the calling application
    app_only: bool
    scopes: frozenset[str]
    roles: tuple[str, ...]
    name: str
    preferred_username: str
    expires_at: float


def peek_claims(token: str) -> dict[str, Any]:
    """The claims before any check, only to choose the company (its keys decide afterwards)."""
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"malformed token: {exc}") from None
    return claims


def check_not_graph(header: Mapping[str, Any], claims: Mapping[str, Any]) -> None:
    """A token for Microsoft Graph is not for this API (and its signature is Graph's to check)."""
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if "nonce" in header or any(a in GRAPH_AUDIENCES for a in audiences):
        raise InvalidToken("token is meant for Microsoft Graph, not this API")


def check_signature_and_api_audience(token: str, key: jwt.PyJWK, expect: ApiExpectations) -> dict[str, Any]:
    """Signature with the tenant's key (RS256 only), and ``aud`` one of the route's audiences."""
    return verify_signature(token, key, sorted(expect.audiences), "aud is not one of this API's audiences")


def check_access_claims(claims: Mapping[str, Any]) -> None:
    """Every claim the broker relies on is present."""
    for name in REQUIRED_ACCESS_CLAIMS:
        if claims.get(name) in (None, ""):
            raise InvalidToken(f"required claim {name!r} is missing")


def check_access_issuer(claims: Mapping[str, Any], expect: ApiExpectations) -> None:
    """``iss`` is the token's tenant's v2 issuer or its v1 issuer (``sts.windows.net``), nothing else."""
    tid = str(claims.get("tid", ""))
    allowed = {expect.v2_issuer.replace("{tenantid}", tid), V1_ISSUER.format(tid=tid)}
    if claims.get("iss") not in allowed:
        raise InvalidToken("iss is not the tenant's v1 or v2 issuer")


def caller_of(claims: Mapping[str, Any]) -> AccessToken:
    """The caller a validated token names; ``idtyp=app`` or no ``scp`` means an application."""
    scp = claims.get("scp")
    scopes = frozenset(scp.split()) if isinstance(scp, str) else frozenset()
    roles = claims.get("roles")
    app_only = claims.get("idtyp") == "app" or not scopes
    return AccessToken(
        tid=str(claims["tid"]).lower(),
        oid=str(claims["oid"]),
        client_id=str(claims.get("azp") or claims.get("appid") or ""),
        app_only=app_only,
        scopes=frozenset() if app_only else scopes,
        roles=tuple(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else (),
        name=str(claims.get("name", "")),
        preferred_username=str(claims.get("preferred_username") or claims.get("upn") or ""),
        expires_at=float(claims["exp"]),
    )


def validate_access_token(
    token: str, keys: Mapping[str, jwt.PyJWK], expect: ApiExpectations, now: float
) -> AccessToken:
    """Run every check in order; return the caller or raise ``InvalidToken`` naming the rule broken."""
    header = read_header(token)  # RS256 only: "none" and HS256 are refused before any key is looked at
    check_not_graph(header, peek_claims(token))
    key = keys.get(header["kid"])
    if key is None:
        raise UnknownSigningKey(header["kid"])
    claims = check_signature_and_api_audience(token, key, expect)
    check_access_claims(claims)
    check_access_issuer(claims, expect)
    check_numeric_dates(claims, now, expect.clock_skew)
    check_lifetime(claims, now, expect.clock_skew)
    check_tenant(claims, expect.allowed_tenants)
    return caller_of(claims)

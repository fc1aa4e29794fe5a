"""Build and sign the tokens the dev IdP issues: claims are pure functions of their inputs and ``now``."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import jwt

from devidp.keys import SigningKey, SigningKeys
from devidp.model import DevTenant, DevUser

TOKEN_LIFETIME = 3600
# Microsoft Graph's application ID: with only OIDC scopes, Entra issues an access token for Graph.
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
_OIDC_SCOPES = ("openid", "profile", "email", "offline_access")
# Entra adds Graph's User.Read when nothing else is asked for; mimic it so the access token has an audience.
_DEFAULT_GRAPH_SCOPE = "User.Read"
# Where an overage claim points when the caller does not say (the dev IdP passes its own emulation).
DEFAULT_GRAPH_URL = "https://graph.microsoft.com"
# The name the overage claims use for their one claim source.
_OVERAGE_SOURCE = "src1"


@dataclass(frozen=True)
class SignIn:
    """Who signed in where, to which app, with which scopes: everything the tokens are derived from."""

    issuer: str
    tenant: DevTenant
    client_id: str
    user: DevUser
    scopes: tuple[str, ...]
    sid: str
    graph_url: str = DEFAULT_GRAPH_URL


def pairwise_subject(tenant_id: str, client_id: str, oid: str) -> str:
    """Entra's pairwise ``sub``: stable per user *and app*; never equal to ``oid``, never shared by apps."""
    digest = hashlib.sha256(f"{tenant_id.lower()}{client_id.lower()}{oid.lower()}".encode()).digest()
    return _b64url(digest)


def login_hint(sign_in: SignIn) -> str:
    """An opaque ``login_hint`` value the app can hand back as ``logout_hint``."""
    return _b64url(f"O.{sign_in.user.oid}.{sign_in.tenant.tenant_id}".encode())


def id_token_claims(sign_in: SignIn, now: float, nonce: str | None) -> dict[str, Any]:
    """The v2.0 ID token claims, computed from the user record as it is *now* (refresh sees edits)."""
    user = sign_in.user
    iat = int(now)
    claims: dict[str, Any] = {
        "aud": sign_in.client_id,
        "iss": sign_in.issuer,
        "iat": iat,
        "nbf": iat,
        "exp": iat + TOKEN_LIFETIME,
        "name": user.name,
        "oid": user.oid,
        "preferred_username": user.username,
        "rh": _random_id(),
        "sid": sign_in.sid,
        "sub": pairwise_subject(sign_in.tenant.tenant_id, sign_in.client_id, user.oid),
        "tid": sign_in.tenant.tenant_id,
        "uti": _random_id(),
        "ver": "2.0",
        "login_hint": login_hint(sign_in),
    }
    # Entra omits optional claims without a value rather than sending null or [].
    optional: dict[str, object] = {
        "nonce": nonce,
        "email": user.email,
        "given_name": user.given_name,
        "family_name": user.family_name,
        "roles": list(user.roles) or None,
        "groups": None if user.has_group_overage else list(user.groups) or None,
    }
    claims.update({name: value for name, value in optional.items() if value is not None})
    # A user's optional claims never replace the token's own (iss, aud, tid, oid...).
    claims.update({name: value for name, value in user.claims.items() if name not in claims})
    if user.has_group_overage:
        claims.update(group_overage_claims(sign_in.graph_url, user.oid))
    return claims


def group_overage_claims(graph_url: str, oid: str) -> dict[str, Any]:
    """Past 200 groups Entra lists none but says where to ask (OIDC Core 5.6.2 distributed claims)."""
    endpoint = f"{graph_url}/v1.0/users/{oid}/getMemberObjects"
    return {
        "_claim_names": {"groups": _OVERAGE_SOURCE},
        "_claim_sources": {_OVERAGE_SOURCE: {"endpoint": endpoint}},
    }


def granted_scopes(requested: tuple[str, ...]) -> tuple[str, ...]:
    """The scopes echoed in the token response: the OIDC ones asked for plus Graph's User.Read."""
    oidc = tuple(s for s in requested if s in ("openid", "profile", "email"))
    resource = tuple(s for s in requested if s not in _OIDC_SCOPES)
    return oidc + (resource or (f"https://graph.microsoft.com/{_DEFAULT_GRAPH_SCOPE}",))


def access_token_claims(sign_in: SignIn, now: float) -> dict[str, Any]:
    """A Graph-audience access token: the broker never reads it, but its shape should be realistic."""
    iat = int(now)
    resource = [s.rsplit("/", 1)[-1] for s in granted_scopes(sign_in.scopes) if s not in _OIDC_SCOPES]
    # Graph's User.Read is always granted, so the token can read the user's groups on overage.
    resource += [] if _DEFAULT_GRAPH_SCOPE in resource else [_DEFAULT_GRAPH_SCOPE]
    scp = [s for s in sign_in.scopes if s in ("openid", "profile", "email")] + resource
    return {
        "aud": GRAPH_APP_ID,
        "iss": sign_in.issuer,
        "iat": iat,
        "nbf": iat,
        "exp": iat + TOKEN_LIFETIME,
        "azp": sign_in.client_id,
        "name": sign_in.user.name,
        "oid": sign_in.user.oid,
        "preferred_username": sign_in.user.username,
        "scp": " ".join(scp),
        "sub": pairwise_subject(sign_in.tenant.tenant_id, GRAPH_APP_ID, sign_in.user.oid),
        "tid": sign_in.tenant.tenant_id,
        "uti": _random_id(),
        "ver": "2.0",
    }


def sign(keys: SigningKeys, claims: dict[str, Any]) -> str:
    """Sign ``claims`` with RS256 and the current key, naming it in the ``kid`` header as Entra does."""
    return sign_with(keys.current, claims)


def sign_with(key: SigningKey, claims: dict[str, Any]) -> str:
    """Sign ``claims`` with RS256 and ``key``, naming it in the ``kid`` header."""
    return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid, "typ": "JWT"})


def _random_id() -> str:
    return secrets.token_urlsafe(16)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

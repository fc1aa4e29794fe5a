"""ID-token validation, one named check per rule (OpenID Connect Core 3.1.3.7 and ENTRA.md).

Pure: the keys and the clock are parameters, so every rule is tested without a network. pyjwt verifies
the signature, ``aud`` and ``iss``; time rules are checked here against the ``now`` we are given.
The user is identified by ``tid`` + ``oid`` only; ``email`` and ``preferred_username`` are display data.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from broker.errors import InvalidToken

# Entra signs ID tokens with RS256 only. Never accept "none" or an HMAC algorithm: with HS256 an attacker
# could "sign" with our copy of the public key (RFC 8725 section 2.1 and 3.1).
ALLOWED_ALGORITHMS = ("RS256",)
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "tid", "oid")


class UnknownSigningKey(InvalidToken):
    """The token names a ``kid`` we do not have; the caller may refetch the tenant's keys once."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        super().__init__(f"unknown signing key id {kid!r}")


TENANT_PLACEHOLDER = "{tenantid}"


@dataclass(frozen=True)
class Expectations:
    """What a valid ID token for this login must say.

    ``issuer`` is the discovery document's; for multi-tenant (``organizations``) apps it is the template
    ``…/{tenantid}/v2.0`` and ``allowed_tenants`` is the operator's allow-list. For a single tenant,
    ``allowed_tenants`` holds just that tenant's GUID.
    """

    issuer: str
    client_id: str
    allowed_tenants: frozenset[str]
    nonce: str | None  # None for refreshed tokens, which carry no nonce
    clock_skew: float


def read_header(token: str) -> dict[str, Any]:
    """The unverified JOSE header, only to choose the key; rejects disallowed algorithms up front."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"malformed token: {exc}") from None
    if header.get("alg") not in ALLOWED_ALGORITHMS:
        raise InvalidToken(
            f"algorithm {header.get('alg')!r} is not allowed (only {', '.join(ALLOWED_ALGORITHMS)})"
        )
    if not isinstance(header.get("kid"), str):
        raise InvalidToken("token header has no key id (kid)")
    return header


def check_signature_and_audience(token: str, key: jwt.PyJWK, expect: Expectations) -> dict[str, Any]:
    """Signature with the tenant's key, and ``aud`` = our client ID."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=list(ALLOWED_ALGORITHMS),
            audience=expect.client_id,
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "require": ["aud"]},
        )
    except jwt.InvalidSignatureError:
        raise InvalidToken("signature does not verify with the tenant's keys") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken("aud is not this company's client ID") from None
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"token rejected: {exc}") from None
    return claims


def check_issuer(claims: Mapping[str, Any], expect: Expectations) -> None:
    """``iss`` is exactly the tenant's issuer; for a template, with the token's own ``tid`` substituted."""
    expected = expect.issuer
    if TENANT_PLACEHOLDER in expected:
        expected = expected.replace(TENANT_PLACEHOLDER, str(claims.get("tid", "")))
    if claims.get("iss") != expected:
        raise InvalidToken("iss is not the company's tenant issuer")


def check_required_claims(claims: Mapping[str, Any]) -> None:
    """Every claim the broker relies on is present."""
    for name in REQUIRED_CLAIMS:
        if claims.get(name) in (None, ""):
            raise InvalidToken(f"required claim {name!r} is missing")


def check_lifetime(claims: Mapping[str, Any], now: float, skew: float) -> None:
    """``exp`` in the future, ``nbf`` and ``iat`` not in the future, each within the allowed skew."""
    for name in ("exp", "iat", "nbf"):
        if name in claims and (isinstance(claims[name], bool) or not isinstance(claims[name], int | float)):
            raise InvalidToken(f"{name} is not a number")
    if claims["exp"] + skew <= now:
        raise InvalidToken("token has expired")
    if claims.get("nbf", 0) - skew > now:
        raise InvalidToken("token is not valid yet (nbf in the future)")
    if claims["iat"] - skew > now:
        raise InvalidToken("token was issued in the future (iat)")


def check_nonce(claims: Mapping[str, Any], expected: str | None) -> None:
    """The nonce we sent for this login came back: the token was issued for this login, not replayed.

    Refreshed ID tokens carry no nonce (``expected`` is None); they are bound to the session instead, by
    the caller checking that ``tid`` and ``oid`` did not change.
    """
    if expected is None:
        return
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), expected.encode()):
        raise InvalidToken("nonce does not match this sign-in")


def check_tenant(claims: Mapping[str, Any], allowed_tenants: frozenset[str]) -> None:
    """``tid`` is the tenant bound to the login code that started this login (or on its allow-list)."""
    if str(claims.get("tid", "")).lower() not in allowed_tenants:
        raise InvalidToken("tid is not a tenant allowed for this company's login")


def validate_id_token(
    token: str, keys: Mapping[str, jwt.PyJWK], expect: Expectations, now: float
) -> dict[str, Any]:
    """Run every check in order; return the claims or raise ``InvalidToken`` naming the rule broken."""
    header = read_header(token)
    key = keys.get(header["kid"])
    if key is None:
        raise UnknownSigningKey(header["kid"])
    claims = check_signature_and_audience(token, key, expect)
    check_required_claims(claims)
    check_issuer(claims, expect)
    check_lifetime(claims, now, expect.clock_skew)
    check_nonce(claims, expect.nonce)
    check_tenant(claims, expect.allowed_tenants)
    return claims

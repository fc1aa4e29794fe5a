"""ID-token validation, one named check per rule (OpenID Connect Core 3.1.3.7 and ENTRA.md).

Pure: the keys and the clock are parameters, so every rule is tested without a network. pyjwt verifies
the signature and that ``aud`` names us; every other rule is a ``check_*`` here, against the ``now`` we
are given. The payload's JSON is decoded strictly: ``NaN``, ``Infinity`` and numbers too large for a float
are not numbers. The user is identified by ``tid`` + ``oid`` only; ``email`` and ``preferred_username``
are display data.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from broker.errors import InvalidToken

# Entra signs ID tokens with RS256 only. Never accept "none" or an HMAC algorithm: with HS256 an attacker
# could "sign" with our copy of the public key (RFC 8725 section 2.1 and 3.1).
ALLOWED_ALGORITHMS = ("RS256",)
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "tid", "oid")
# Entra's configurable ID-token lifetime is at most one day: an ``exp`` further away than that (plus the
# skew) is a broken or hostile provider, and would keep a session from ever being refreshed.
MAX_TOKEN_LIFETIME = 24 * 3600.0
NUMERIC_DATES = ("exp", "iat", "nbf")


def _not_a_json_number(text: str) -> float:
    raise ValueError(f"{text} is not a JSON number (RFC 8259 section 6)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} does not fit a number")
    return value


class _StrictJSONPyJWT(jwt.PyJWT):
    """pyjwt with a strict payload decoder: ``NaN``/``Infinity`` (and ``1e400``) are refused, not numbers."""

    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        # pyjwt documents this hook for subclasses that decode the payload differently.
        try:
            payload = json.loads(
                decoded["payload"], parse_constant=_not_a_json_number, parse_float=_finite_float
            )
        except (ValueError, RecursionError) as exc:
            raise jwt.DecodeError(f"Invalid payload string: {exc}") from None
        if not isinstance(payload, dict):
            raise jwt.DecodeError("Invalid payload string: must be a json object")
        return payload


_STRICT_JWT = _StrictJSONPyJWT()


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


def check_jwk_use(jwk: Mapping[str, Any]) -> None:
    """RFC 7517 4.2: a key published with ``use`` other than ``sig`` is not for verifying signatures."""
    if "use" in jwk and jwk["use"] != "sig":
        raise InvalidToken(f"key use {jwk['use']!r} is not 'sig'")


def check_jwk_key_ops(jwk: Mapping[str, Any]) -> None:
    """RFC 7517 4.3: a key published with ``key_ops`` must allow ``verify``."""
    if "key_ops" in jwk and (not isinstance(jwk["key_ops"], list) or "verify" not in jwk["key_ops"]):
        raise InvalidToken("key_ops does not include 'verify'")


def check_jwk_alg(jwk: Mapping[str, Any]) -> None:
    """RFC 7517 4.4: a key published for another algorithm is never used for ours (RS256)."""
    if "alg" in jwk and jwk["alg"] not in ALLOWED_ALGORITHMS:
        raise InvalidToken(f"key is published for algorithm {jwk['alg']!r}, not RS256")


def check_signing_jwk(jwk: Mapping[str, Any]) -> None:
    """Whether a published JWK may verify our ID tokens: its own ``use``, ``key_ops`` and ``alg`` agree."""
    check_jwk_use(jwk)
    check_jwk_key_ops(jwk)
    check_jwk_alg(jwk)


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


def verify_signature(
    token: str, key: jwt.PyJWK, audience: str | list[str], wrong_audience: str
) -> dict[str, Any]:
    """Signature with the tenant's key (RS256 only, strict JSON) and ``aud`` among ``audience``; the time
    rules are checked one by one after this (``check_lifetime``). ``wrong_audience`` says which rule an
    unexpected ``aud`` broke (ID token or access token)."""
    try:
        claims: dict[str, Any] = _STRICT_JWT.decode(
            token,
            key.key,
            algorithms=list(ALLOWED_ALGORITHMS),
            audience=audience,
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "require": ["aud"]},
        )
    except jwt.InvalidSignatureError:
        raise InvalidToken("signature does not verify with the tenant's keys") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken(wrong_audience) from None
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"token rejected: {exc}") from None
    return claims


def check_signature_and_audience(token: str, key: jwt.PyJWK, expect: Expectations) -> dict[str, Any]:
    """Signature with the tenant's key, and ``aud`` = our client ID."""
    return verify_signature(token, key, expect.client_id, "aud is not this company's client ID")


def check_authorized_party(claims: Mapping[str, Any], client_id: str) -> None:
    """OIDC Core 3.1.3.7 items 4-5: with several audiences ``azp`` must be present; if present, it is us."""
    audiences = claims.get("aud")
    several = isinstance(audiences, list) and len(audiences) > 1
    if several and "azp" not in claims:
        raise InvalidToken("several audiences and no azp (authorized party)")
    if "azp" in claims and claims["azp"] != client_id:
        raise InvalidToken("azp (authorized party) is not this company's client ID")


def check_no_untrusted_audience(claims: Mapping[str, Any], client_id: str) -> None:
    """OIDC Core 3.1.3.7 item 3: a token that also names audiences we do not trust is refused."""
    audiences = claims.get("aud")
    if isinstance(audiences, list) and any(aud != client_id for aud in audiences):
        raise InvalidToken("aud names another audience besides this company's client ID")


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


def check_numeric_dates(claims: Mapping[str, Any], now: float, skew: float) -> None:
    """RFC 7519 2 (NumericDate): ``exp``/``iat``/``nbf`` are finite numbers; ``exp`` within a sane horizon.

    The horizon is ``now`` + ``MAX_TOKEN_LIFETIME`` (Entra's longest ID-token lifetime) + the skew: an
    ``exp`` of 10^12 or infinity would make the session's token never come due for a refresh.
    """
    for name in NUMERIC_DATES:
        value = claims.get(name)
        if name not in claims:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidToken(f"{name} is not a number")
        if not math.isfinite(value):
            raise InvalidToken(f"{name} is not a finite number")
    if claims.get("exp", 0) > now + MAX_TOKEN_LIFETIME + skew:
        raise InvalidToken("exp is further away than the longest token lifetime (1 day)")


def check_lifetime(claims: Mapping[str, Any], now: float, skew: float) -> None:
    """``exp`` in the future, ``nbf`` and ``iat`` not in the future, each within the allowed skew."""
    for name in NUMERIC_DATES:
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
    check_authorized_party(claims, expect.client_id)
    check_no_untrusted_audience(claims, expect.client_id)
    check_issuer(claims, expect)
    check_numeric_dates(claims, now, expect.clock_skew)
    check_lifetime(claims, now, expect.clock_skew)
    check_nonce(claims, expect.nonce)
    check_tenant(claims, expect.allowed_tenants)
    return claims

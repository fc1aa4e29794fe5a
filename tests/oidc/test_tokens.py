"""Every ID-token rule, each with a real RSA signature, and each test failing if its rule is removed."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from broker.errors import InvalidToken
from broker.oidc.discovery import parse_jwks
from broker.oidc.tokens import Expectations, UnknownSigningKey, check_numeric_dates, validate_id_token

TID = "3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c"
CLIENT = "6a4f3e2d-1c0b-4a9f-8e7d-6c5b4a3f2e1d"
ISSUER = f"https://login.example/{TID}/v2.0"
NOW = 1_800_000_000.0
EXPECT = Expectations(
    issuer=ISSUER, client_id=CLIENT, allowed_tenants=frozenset({TID}), nonce="n-123", clock_skew=120
)
OTHER_TID = "8b7c6d5e-4f3a-4b2c-9d1e-0f9a8b7c6d5e"
MULTI = Expectations(
    issuer="https://login.example/{tenantid}/v2.0",
    client_id=CLIENT,
    allowed_tenants=frozenset({TID}),
    nonce="n-123",
    clock_skew=120,
)

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(private: rsa.RSAPrivateKey, kid: str) -> jwt.PyJWK:
    data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    data["kid"] = kid
    return jwt.PyJWK.from_dict(data, algorithm="RS256")


KEYS = {"k1": _jwk(_KEY, "k1")}


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": CLIENT,
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 3600,
        "ver": "2.0",
        "nonce": "n-123",
        "tid": TID,
        "oid": "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
        "sub": "pairwise",
        "email": "adele@contoso.example",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: rsa.RSAPrivateKey = _KEY, kid: str = "k1") -> str:
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_valid_token_passes() -> None:
    assert validate_id_token(sign(claims()), KEYS, EXPECT, NOW)["oid"] == claims()["oid"]


@pytest.mark.parametrize(
    ("payload", "rule"),
    [
        (claims(aud="someone-else"), "aud"),
        (claims(iss=f"https://login.example/{'0' * 8}-0000-0000-0000-000000000000/v2.0"), "iss"),
        (claims(tid="8b7c6d5e-4f3a-4b2c-9d1e-0f9a8b7c6d5e"), "tid"),
        (claims(exp=int(NOW) - 121), "expired"),
        (claims(nbf=int(NOW) + 121), "not valid yet"),
        (claims(iat=int(NOW) + 121), "future"),
        (claims(nonce="other"), "nonce"),
        (claims(nonce=None), "nonce"),
        (claims(oid=None), "oid"),
        (claims(tid=None), "tid"),
    ],
)
def test_each_claim_rule_rejects(payload: dict[str, Any], rule: str) -> None:
    with pytest.raises(InvalidToken, match=rule):
        validate_id_token(sign(payload), KEYS, EXPECT, NOW)


def test_skew_is_tolerated_within_limit() -> None:
    validate_id_token(
        sign(claims(exp=int(NOW) - 100, nbf=int(NOW) + 100, iat=int(NOW) + 100)), KEYS, EXPECT, NOW
    )


def test_bad_signature_is_rejected() -> None:
    with pytest.raises(InvalidToken, match="signature"):
        validate_id_token(sign(claims(), key=_OTHER_KEY), KEYS, EXPECT, NOW)


def test_tampered_payload_is_rejected() -> None:
    header, _, signature = sign(claims()).split(".")
    forged = f"{header}.{b64(claims(oid='ffffffff-ffff-4fff-8fff-ffffffffffff'))}.{signature}"
    with pytest.raises(InvalidToken, match="signature"):
        validate_id_token(forged, KEYS, EXPECT, NOW)


def test_alg_none_is_rejected() -> None:
    token = f"{b64({'alg': 'none', 'kid': 'k1'})}.{b64(claims())}."
    with pytest.raises(InvalidToken, match="not allowed"):
        validate_id_token(token, KEYS, EXPECT, NOW)


def test_hs256_signed_with_the_public_key_is_rejected() -> None:
    public_pem = _KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64({"alg": "HS256", "kid": "k1", "typ": "JWT"})
    body = b64(claims())
    import hashlib
    import hmac

    mac = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    token = f"{header}.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(InvalidToken, match="not allowed"):
        validate_id_token(token, KEYS, EXPECT, NOW)


def test_unknown_kid_asks_for_a_refetch() -> None:
    with pytest.raises(UnknownSigningKey):
        validate_id_token(sign(claims(), kid="rotated"), KEYS, EXPECT, NOW)


def test_garbage_is_rejected_cleanly() -> None:
    with pytest.raises(InvalidToken):
        validate_id_token("not.a.jwt", KEYS, EXPECT, time.time())


def test_multi_tenant_issuer_template_takes_the_tokens_tid() -> None:
    assert validate_id_token(sign(claims()), KEYS, MULTI, NOW)["tid"] == TID


def test_multi_tenant_tenant_not_on_allow_list_is_refused() -> None:
    token = sign(claims(tid=OTHER_TID, iss=f"https://login.example/{OTHER_TID}/v2.0"))
    with pytest.raises(InvalidToken, match="tid"):
        validate_id_token(token, KEYS, MULTI, NOW)


def test_multi_tenant_issuer_must_match_the_tokens_own_tid() -> None:
    # A token from an allowed tenant whose iss names another tenant: the template check catches it.
    token = sign(claims(iss=f"https://login.example/{OTHER_TID}/v2.0"))
    with pytest.raises(InvalidToken, match="iss"):
        validate_id_token(token, KEYS, MULTI, NOW)


# --- Issue 13 (6): loose ends a misbehaving or compromised provider could use -------------------------


def sign_raw(payload: bytes, key: rsa.RSAPrivateKey = _KEY, kid: str = "k1") -> str:
    """A correctly signed JWS over exactly these payload bytes (JSON a well-behaved encoder never writes)."""
    return jwt.api_jws.PyJWS().encode(payload, key, algorithm="RS256", headers={"kid": kid})


def published(**fields: Any) -> dict[str, Any]:
    """The JWKS the provider publishes: our signing key, with the given extra JWK members."""
    data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_KEY.public_key()))
    return {"keys": [{**data, "kid": "k1", **fields}]}


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        ({"alg": "RS384"}, "RFC 7517 4.4"),
        ({"alg": "PS256"}, "RFC 7517 4.4"),
        ({"use": "enc"}, "RFC 7517 4.2"),
        ({"key_ops": ["encrypt"]}, "RFC 7517 4.3"),
        ({"key_ops": "verify"}, "RFC 7517 4.3"),
    ],
)
def test_a_key_published_for_another_use_or_algorithm_verifies_nothing(
    fields: dict[str, Any], rule: str
) -> None:
    keys = parse_jwks(published(**fields))
    assert "k1" not in keys, rule
    with pytest.raises(UnknownSigningKey):
        validate_id_token(sign(claims()), keys, EXPECT, NOW)


def test_a_key_published_for_rs256_signatures_verifies() -> None:
    keys = parse_jwks(published(alg="RS256", use="sig", key_ops=["verify"]))
    assert validate_id_token(sign(claims()), keys, EXPECT, NOW)["tid"] == TID


def test_several_audiences_without_azp_are_refused() -> None:
    # OIDC Core 3.1.3.7 item 4
    with pytest.raises(InvalidToken, match="no azp"):
        validate_id_token(sign(claims(aud=[CLIENT, OTHER_TID])), KEYS, EXPECT, NOW)


def test_azp_naming_another_client_is_refused() -> None:
    # OIDC Core 3.1.3.7 item 5
    with pytest.raises(InvalidToken, match="azp"):
        validate_id_token(sign(claims(azp=OTHER_TID)), KEYS, EXPECT, NOW)


def test_an_extra_untrusted_audience_is_refused_even_with_our_azp() -> None:
    # OIDC Core 3.1.3.7 item 3: additional audiences not trusted by the client
    with pytest.raises(InvalidToken, match="another audience"):
        validate_id_token(sign(claims(aud=[CLIENT, OTHER_TID], azp=CLIENT)), KEYS, EXPECT, NOW)


def test_our_azp_and_a_list_of_just_us_pass() -> None:
    assert validate_id_token(sign(claims(aud=[CLIENT], azp=CLIENT)), KEYS, EXPECT, NOW)["tid"] == TID


@pytest.mark.parametrize("exp", [10**12, int(NOW) + 24 * 3600 + 121])
def test_exp_beyond_the_longest_token_lifetime_is_refused(exp: int) -> None:
    with pytest.raises(InvalidToken, match="longest token lifetime"):
        validate_id_token(sign(claims(exp=exp)), KEYS, EXPECT, NOW)


def test_exp_a_day_ahead_is_accepted() -> None:
    validate_id_token(sign(claims(exp=int(NOW) + 24 * 3600)), KEYS, EXPECT, NOW)


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity", "NaN", "1e400"])
@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_infinite_or_nan_dates_are_not_numbers(claim: str, literal: str) -> None:
    payload = json.dumps(claims(**{claim: None}))[:-1] + f', "{claim}": {literal}}}'
    assert json.loads(payload)[claim] != claims()[claim]  # the claim really is the odd literal
    # Refused while decoding the JSON: such a literal is not a number at all (strict decoder).
    with pytest.raises(InvalidToken, match="not a JSON number|does not fit a number"):
        validate_id_token(sign_raw(payload.encode()), KEYS, EXPECT, NOW)


def test_non_finite_dates_are_refused_by_the_numeric_date_rule_too() -> None:
    # Even if the JSON decoder let them through, the NumericDate rule refuses a non-finite exp.
    for value in (float("inf"), float("nan")):
        with pytest.raises(InvalidToken, match="finite"):
            check_numeric_dates(claims(exp=value), NOW, 120)

"""The identity assertion: claims, signature, audience per route, caching, key rotation."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from broker.config.schema import RouteConfig
from broker.identity.assertion import AssertionSigner, generate_es256_pem, load_signing_key
from broker.identity.headers import IdentityHeaders
from broker.ops.caches import SWEEP_EVERY
from broker.proxy.routing import RouteTable
from broker.sessions.model import Session

SESSION = Session(login_code="contoso", tid="t-1", oid="o-1", name="Adele", roles=["admin"], role="admin")
NOW = 1_800_000_000.0


def verify(token: str, signer: AssertionSigner, audience: str) -> dict[str, object]:
    jwks = jwt.PyJWKSet.from_dict(signer.jwks())
    key = next(k for k in jwks.keys if k.key_id == jwt.get_unverified_header(token)["kid"])
    claims: dict[str, object] = jwt.decode(
        token,
        key.key,
        algorithms=["ES256", "RS256"],
        audience=audience,
        issuer="https://gw",
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    return claims


def test_claims_and_signature() -> None:
    signer = AssertionSigner([load_signing_key(generate_es256_pem())], "https://gw", 60)
    token = signer.sign(SESSION, "https://app/wiki", NOW)
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    claims = verify(token, signer, "https://app/wiki")
    assert claims["sub"] == "t-1:o-1" and claims["role"] == "admin" and claims["roles"] == ["admin"]
    assert claims["exp"] == int(NOW) + 60 and claims["login_code"] == "contoso" and claims["jti"]
    with pytest.raises(jwt.InvalidAudienceError):
        verify(token, signer, "https://app/other")  # two routes on one host are told apart


def test_assertions_are_cached_until_near_expiry_and_renewed_after_refresh() -> None:
    signer = AssertionSigner([load_signing_key(generate_es256_pem())], "https://gw", 60)
    first = signer.sign(SESSION, "https://app", NOW)
    assert signer.sign(SESSION, "https://app", NOW + 39) == first
    assert signer.sign(SESSION, "https://app", NOW + 41) != first  # under a third of its life left
    assert signer.sign(SESSION, "https://other", NOW) != first
    refreshed = Session(**{**SESSION.__dict__, "refreshed_at": 5.0, "roles": ["reader"], "role": "reader"})
    assert verify(signer.sign(refreshed, "https://app", NOW + 1), signer, "https://app")["roles"] == [
        "reader"
    ]


def test_cache_is_bounded() -> None:
    signer = AssertionSigner([load_signing_key(generate_es256_pem())], "https://gw", 60, cache_size=10)
    for i in range(25):
        signer.sign(Session(login_code="c", tid="t", oid=f"o{i}"), "https://app", NOW)
    assert len(signer._cache) <= 10


def test_rotation_first_key_signs_all_are_published(tmp_path: Path) -> None:
    new, old = load_signing_key(generate_es256_pem()), load_signing_key(generate_es256_pem())
    signer = AssertionSigner([new, old], "https://gw", 60)
    assert [k["kid"] for k in signer.jwks()["keys"]] == [new.kid, old.kid]
    assert jwt.get_unverified_header(signer.sign(SESSION, "https://app", NOW))["kid"] == new.kid
    assert all("d" not in k for k in signer.jwks()["keys"])  # public parts only


def test_rsa_keys_sign_rs256() -> None:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = AssertionSigner([load_signing_key(pem)], "https://gw", 60)
    token = signer.sign(SESSION, "https://app", NOW)
    assert jwt.get_unverified_header(token)["alg"] == "RS256" and verify(token, signer, "https://app")
    assert json.dumps(signer.jwks())


def test_expired_assertions_are_swept_while_signing_goes_on() -> None:
    """The cache holds about the live sessions: expired entries go every SWEEP_EVERY signatures."""
    signer = AssertionSigner([load_signing_key(generate_es256_pem())], "https://gw", 60)
    route = RouteTable([RouteConfig(host="h", upstream="http://u", path="/")]).routes[0]
    headers = IdentityHeaders(signer, "X-Broker-Assertion")
    for n in range(SWEEP_EVERY):
        headers.for_request(Session(login_code="c", tid="t", oid=f"gone-{n}"), route, "h", 1000.0)
    for n in range(SWEEP_EVERY):
        headers.for_request(Session(login_code="c", tid="t", oid=f"live-{n}"), route, "h", 2000.0)
    assert len(signer._cache) <= SWEEP_EVERY + 1
    assert len(headers._built) <= SWEEP_EVERY + 1

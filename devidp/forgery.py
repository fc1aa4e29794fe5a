"""Deliberately broken ID tokens (``token_fault``), each the way an attacker or a misconfiguration breaks one.

Only the dev IdP's tests of the *gateway* need these: every fault must make a correct relying party reject
the token. Claim faults change claims and sign properly; signature faults sign properly-shaped claims
wrongly, through pyjwt wherever pyjwt allows it.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import HMACAlgorithm

from devidp.keys import SigningKey
from devidp.tokens import sign_with

# How far expired and not-yet-valid tokens are off: far beyond any clock-skew leeway a validator allows.
_SKEW = 3600


@dataclass(frozen=True)
class FaultSetting:
    """What a fault needs besides the claims: the IdP's origin, another tenant to impersonate, and now."""

    public_url: str
    other_tenant_id: str | None
    now: float


def faulty_claims(fault: str | None, claims: dict[str, Any], setting: FaultSetting) -> dict[str, Any]:
    """``claims`` with the claim-level fault applied (a copy; signature faults leave claims alone)."""
    broken = dict(claims)
    now = int(setting.now)
    if fault == "wrong_aud":
        broken["aud"] = str(uuid.uuid4())
    elif fault == "wrong_iss":
        broken["iss"] = f"{setting.public_url}/{uuid.uuid4()}/v2.0"
    elif fault == "other_tid":
        # A genuine token of another directory: what a multi-tenant mix-up would hand the gateway.
        other = setting.other_tenant_id or str(uuid.uuid4())
        broken["tid"] = other
        broken["iss"] = f"{setting.public_url}/{other}/v2.0"
    elif fault == "expired":
        broken.update(iat=now - 2 * _SKEW, nbf=now - 2 * _SKEW, exp=now - _SKEW)
    elif fault == "not_yet_valid":
        broken.update(iat=now + _SKEW, nbf=now + _SKEW, exp=now + 2 * _SKEW)
    elif fault == "missing_oid":
        broken.pop("oid", None)
    elif fault == "nonce_mismatch":
        broken["nonce"] = secrets.token_urlsafe(16)
    elif fault == "far_future_exp":
        broken["exp"] = 10**12
    elif fault == "infinite_exp":
        broken["exp"] = float("inf")  # pyjwt's json.dumps writes the non-standard literal Infinity
    elif fault == "extra_aud_no_azp":
        broken["aud"] = [broken["aud"], str(uuid.uuid4())]
        broken.pop("azp", None)
    elif fault == "foreign_azp":
        broken["azp"] = str(uuid.uuid4())
    return broken


def sign_id_token(fault: str | None, claims: dict[str, Any], key: SigningKey, setting: FaultSetting) -> str:
    """The ID token for ``claims`` signed with ``key``, broken by ``fault`` (``None``: a correct token)."""
    claims = faulty_claims(fault, claims, setting)
    if fault == "unknown_kid":
        # A key nobody published: validators must refetch the JWKS, then still refuse.
        return sign_with(SigningKey.generate(setting.now), claims)
    if fault == "alg_none":
        # RFC 7519 6: an unsecured JWT. It names a published kid so a validator cannot reject it by kid alone.
        return jwt.encode(claims, "", algorithm="none", headers={"kid": key.kid, "typ": "JWT"})
    if fault == "hs256_public_key":
        return _hmac_keyed_with_public_key(claims, key)
    token = sign_with(key, claims)
    if fault == "bad_signature":
        return _flip_last_signature_byte(token)
    return token


class _PemAsHmacSecret(HMACAlgorithm):
    """HS256 that accepts a PEM as its secret, which pyjwt rightly refuses: this *is* the forgery."""

    def prepare_key(self, key: str | bytes) -> bytes:
        return key.encode() if isinstance(key, str) else key


def _hmac_keyed_with_public_key(claims: dict[str, Any], key: SigningKey) -> str:
    # The algorithm-confusion attack: a validator that lets the header pick the algorithm and feeds the
    # RSA public key (which everybody can fetch) to HMAC would accept this token as genuine.
    pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forger = jwt.PyJWS(algorithms=[])
    forger.register_algorithm("HS256", _PemAsHmacSecret(HMACAlgorithm.SHA256))
    payload = json.dumps(claims, separators=(",", ":")).encode()
    return forger.encode(payload, pem, algorithm="HS256", headers={"kid": key.kid, "typ": "JWT"})


def _flip_last_signature_byte(token: str) -> str:
    # Flip a bit of the last *byte* rather than the last base64url character, whose low bits are padding
    # that lenient decoders ignore: the signature must really differ.
    head, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[-1] ^= 0x01
    return f"{head}.{payload}.{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode('ascii')}"

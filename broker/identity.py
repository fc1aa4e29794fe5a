"""The signed identity assertion sent upstream, and the JWKS that lets backends verify it.

ES256 by default (RS256 when the key file holds an RSA key). Several keys may be configured: the first
signs, all are published, so a new key can be published before it starts signing (rotation without
downtime). ``kid`` is the RFC 7638 thumbprint of the public key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.sessions.model import Session

# RFC 7638 section 3.2: the required members of each key type, in lexicographic order.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    """One private key with its algorithm and public JWK."""

    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    algorithm: str
    public_jwk: dict[str, Any]

    @property
    def kid(self) -> str:
        """The key id published in the JWKS and put in each assertion's header."""
        return str(self.public_jwk["kid"])


def load_signing_key(pem: bytes) -> SigningKey:
    """Parse a PEM private key (P-256 EC -> ES256, RSA >= 2048 -> RS256); ValueError otherwise."""
    key = serialization.load_pem_private_key(pem, password=None)
    jwk: dict[str, Any]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("EC keys must be on P-256 (ES256)")
        algorithm = "ES256"
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    elif isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise ValueError("RSA keys must be at least 2048 bits")
        algorithm = "RS256"
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    else:
        raise ValueError("only P-256 EC and RSA private keys are supported")
    jwk.update({"use": "sig", "alg": algorithm})
    jwk["kid"] = jwk_thumbprint(jwk)
    return SigningKey(key, algorithm, jwk)


def load_signing_keys(paths: list[Path]) -> list[SigningKey]:
    """Load every configured key file; the first will sign."""
    return [load_signing_key(p.read_bytes()) for p in paths]


def generate_es256_pem() -> bytes:
    """A new P-256 private key in PKCS#8 PEM (``broker keygen``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class AssertionSigner:
    """Signs identity assertions with the first key and publishes all of them."""

    def __init__(self, keys: list[SigningKey], issuer: str, ttl_seconds: float) -> None:
        if not keys:
            raise ValueError("at least one signing key is required")
        self._keys = keys
        self._issuer = issuer
        self._ttl = int(ttl_seconds)

    def sign(self, session: Session, audience: str, now: float) -> str:
        """A short-lived JWT carrying the session's identity for one route's audience."""
        claims = {
            **session.public_claims(),
            "iss": self._issuer,
            "aud": audience,
            "iat": int(now),
            "exp": int(now) + self._ttl,
            "jti": secrets.token_urlsafe(16),
        }
        key = self._keys[0]
        return jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})

    def jwks(self) -> dict[str, Any]:
        """The public keys as a JWK Set, for ``/.auth/jwks.json``."""
        return {"keys": [dict(k.public_jwk) for k in self._keys]}

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

from broker.ops.caches import SweepSchedule, sweep
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


# An assertion is reused while at least this share of its lifetime remains, so backends always receive one
# with a comfortable margin, and signing (an ECDSA operation) is paid about once per 40 s per user and route.
REUSE_WHILE_REMAINING = 1 / 3
DEFAULT_CACHE_SIZE = 50_000

CacheKey = tuple[str, str, float, float, str, tuple[str, ...]]


class AssertionSigner:
    """Signs identity assertions with the first key and publishes all of them.

    Assertions are cached per (session, audience): the key holds the session's creation and last refresh
    times, so a refresh that changes roles or names yields a new assertion at once. A cached assertion
    keeps its ``jti``: it identifies the assertion, not the request.
    """

    def __init__(
        self, keys: list[SigningKey], issuer: str, ttl_seconds: float, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        if not keys:
            raise ValueError("at least one signing key is required")
        self._keys = keys
        self._issuer = issuer
        self._ttl = int(ttl_seconds)
        self._cache: dict[CacheKey, tuple[str, float]] = {}
        self._sweeps = SweepSchedule(cache_size)

    def sign(self, session: Session, audience: str, now: float, extra: tuple[str, ...] = ()) -> str:
        """A short-lived JWT carrying the session's identity for one route's audience (cached); ``extra``
        names kept claims it carries too (a route's ``assertion_claims``)."""
        key: CacheKey = (
            session.user_key,
            session.login_code,
            session.created_at,
            session.refreshed_at,
            audience,
            extra,
        )
        cached = self._cache.get(key)
        if cached is not None and cached[1] - now > self._ttl * REUSE_WHILE_REMAINING:
            return cached[0]
        token = self._sign(session, audience, now, extra)
        if self._sweeps.due(len(self._cache), now):
            sweep(self._cache, lambda entry: entry[1], now, self._sweeps.max_entries)
        self._cache[key] = (token, int(now) + self._ttl)
        return token

    def _sign(self, session: Session, audience: str, now: float, extra: tuple[str, ...] = ()) -> str:
        claims = {
            # Kept claims first: the broker's own claims below always win (the config refuses the names too).
            **{name: session.claims[name] for name in extra if name in session.claims},
            **session.public_claims(),
            "iss": self._issuer,
            "aud": audience,
            "iat": int(now),
            "exp": int(now) + self._ttl,
            "jti": secrets.token_urlsafe(16),
        }
        key = self._keys[0]
        return jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})

    @property
    def ttl(self) -> int:
        """Lifetime of one assertion, in seconds."""
        return self._ttl

    def jwks(self) -> dict[str, Any]:
        """The public keys as a JWK Set, for ``/.auth/jwks.json``."""
        return {"keys": [dict(k.public_jwk) for k in self._keys]}

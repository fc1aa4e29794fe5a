"""The dev IdP's token-signing keys, published as a JWKS the way Entra publishes its keys."""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

_KEY_SIZE = 2048
_CERT_LIFETIME = datetime.timedelta(days=365)


@dataclass(frozen=True)
class SigningKey:
    """One RSA key pair with the self-signed certificate Entra-style JWKS entries carry in ``x5c``."""

    kid: str
    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @classmethod
    def generate(cls, now: float) -> SigningKey:
        """A fresh RSA-2048 key; like Entra, ``kid`` equals ``x5t``, the certificate's SHA-1 thumbprint."""
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_SIZE)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Entra Broker development IdP")])
        issued = datetime.datetime.fromtimestamp(now, tz=datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(private_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(issued - datetime.timedelta(minutes=5))
            .not_valid_after(issued + _CERT_LIFETIME)
            .sign(private_key, hashes.SHA256())
        )
        # RFC 7517 4.8 defines x5t as the SHA-1 thumbprint: an identifier here, not a security check.
        thumbprint = _b64url(certificate.fingerprint(hashes.SHA1()))
        return cls(kid=thumbprint, private_key=private_key, certificate=certificate)

    def jwk(self, issuer: str) -> dict[str, Any]:
        """The public half as a JWK, in the shape Entra's ``/discovery/v2.0/keys`` uses."""
        public = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": public["n"],
            "e": public["e"],
            "x5c": [base64.b64encode(der).decode("ascii")],
            "issuer": issuer,
        }


class SigningKeys:
    """The set of published keys and the one currently used to sign (the newest)."""

    def __init__(self, keys: list[SigningKey]) -> None:
        if not keys:
            raise ValueError("at least one signing key is required")
        self._keys = list(keys)

    @property
    def published(self) -> tuple[SigningKey, ...]:
        """Every key in the JWKS, newest first."""
        return tuple(self._keys)

    def copy(self) -> SigningKeys:
        """An independent set with the same keys, so rotating one does not rotate the other."""
        return SigningKeys(self._keys)

    def rotate(self, now: float, *, retire_old: bool = False) -> SigningKey:
        """Sign with a new key from now on; the old ones stay published (rollover) unless retired."""
        key = SigningKey.generate(now)
        self._keys = [key] if retire_old else [key, *self._keys]
        return key

    def find(self, kid: str) -> SigningKey | None:
        """The published key named ``kid``."""
        return next((k for k in self._keys if k.kid == kid), None)

    @classmethod
    def generate(cls, now: float) -> SigningKeys:
        """One freshly generated key, shared by every tenant as Entra's keys are."""
        return cls([SigningKey.generate(now)])

    @property
    def current(self) -> SigningKey:
        """The key new tokens are signed with."""
        return self._keys[0]

    def jwks(self, issuer: str) -> dict[str, Any]:
        """Every published key as a JWKS document."""
        return {"keys": [key.jwk(issuer) for key in self._keys]}


class AppSigningKeys:
    """Keys of apps with claims mapping: one per app, made on first use, published only at ``?appid=``."""

    def __init__(self) -> None:
        self._keys: dict[str, SigningKey] = {}

    def for_app(self, client_id: str, now: float) -> SigningKey:
        """The app's own key, generated the first time anybody needs it."""
        wanted = client_id.lower()
        if wanted not in self._keys:
            self._keys[wanted] = SigningKey.generate(now)
        return self._keys[wanted]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

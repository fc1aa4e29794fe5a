"""Self-signed test certificates (RSA 2048) and ``private_key_jwt`` assertions, built with cryptography and
pyjwt: the one certificate helper of the tests (the broker's certificate credential, the dev IdP's registered
certificates, ``entra-setup``'s thumbprints)."""

from __future__ import annotations

import base64
import datetime
import secrets
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from devidp.client_assertion import JWT_BEARER


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class ClientCertificate:
    """A self-signed RSA-2048 certificate and its key, as an app registration's certificate credential."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @classmethod
    def generate(cls, name: str = "entra-broker-test") -> ClientCertificate:
        """A fresh key and certificate valid from yesterday for 30 days."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @property
    def certificate_pem(self) -> bytes:
        """The certificate as PEM, as a ``cert_file`` holds it."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM, as a ``key_file`` holds it."""
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def pem(self) -> str:
        """The certificate as PEM text, as an app registration's inline certificate."""
        return self.certificate_pem.decode("ascii")

    @property
    def x5t_s256(self) -> str:
        return _b64url(self.certificate.fingerprint(hashes.SHA256()))

    @property
    def x5t(self) -> str:
        return _b64url(self.certificate.fingerprint(hashes.SHA1()))

    def assertion(
        self,
        client_id: str,
        audience: str,
        now: float,
        *,
        lifetime: int = 300,
        thumbprint: str = "x5t#S256",
        algorithm: str = "RS256",
        **overrides: Any,
    ) -> str:
        """A client assertion as MSAL builds one; ``overrides`` replace claims (None removes one)."""
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": secrets.token_urlsafe(16),
            "nbf": int(now),
            "iat": int(now),
            "exp": int(now) + lifetime,
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        value = self.x5t_s256 if thumbprint == "x5t#S256" else self.x5t
        return jwt.encode(claims, self.key, algorithm=algorithm, headers={thumbprint: value, "typ": "JWT"})


def assertion_form(assertion: str, client_id: str | None = None) -> dict[str, str]:
    """The token-request fields for private_key_jwt (RFC 7523 2.2)."""
    form = {"client_assertion_type": JWT_BEARER, "client_assertion": assertion}
    if client_id is not None:
        form["client_id"] = client_id
    return form

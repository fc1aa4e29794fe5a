"""How the broker proves itself to a company's token endpoint: a client secret or a certificate.

- Secret: ``client_secret_post`` (default) or ``client_secret_basic`` (RFC 6749 2.3.1: both parts are
  form-urlencoded before base64).
- Certificate: ``private_key_jwt`` (RFC 7523). authlib signs the client assertion: ``aud`` = the token
  endpoint, ``iss`` = ``sub`` = client ID, a fresh ``jti``, 10-minute life, and the ``x5t#S256`` header
  Entra uses to find the uploaded certificate. The key is checked against the certificate at start-up,
  so a mismatched pair fails the config load instead of every sign-in.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

from authlib.oauth2.rfc7523 import private_key_jwt_sign
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

from broker.config.schema import TenantConfig

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 600  # ENTRA.md: exp at most 10 minutes


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SecretCredential:
    """A client secret, sent in the form body or as HTTP Basic."""

    client_id: str
    secret: str
    method: str = "post"

    def apply(self, form: dict[str, str], headers: dict[str, str], token_endpoint: str, now: float) -> None:
        """Add the secret to a token request."""
        form["client_id"] = self.client_id
        if self.method == "basic":
            raw = f"{quote_plus(self.client_id)}:{quote_plus(self.secret)}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        else:
            form["client_secret"] = self.secret


@dataclass(frozen=True)
class CertificateCredential:
    """A private key whose certificate is uploaded to the app registration."""

    client_id: str
    key: RSAKey
    thumbprint_s256: str

    @classmethod
    def load(cls, client_id: str, key_pem: bytes, cert_pem: bytes) -> CertificateCredential:
        """Parse and cross-check the key and the certificate; ValueError when they do not belong together."""
        certificate = x509.load_pem_x509_certificate(cert_pem)
        private_key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ValueError("the certificate key must be an RSA private key (Entra signs with RS256/PS256)")
        cert_key = certificate.public_key()
        if (
            not isinstance(cert_key, rsa.RSAPublicKey)
            or cert_key.public_numbers() != private_key.public_key().public_numbers()
        ):
            raise ValueError("the private key does not match the certificate")
        # x5t#S256: base64url SHA-256 of the certificate's DER encoding (RFC 7515 4.1.8).
        thumbprint = _b64url(certificate.fingerprint(hashes.SHA256()))
        return cls(client_id, RSAKey.import_key(key_pem), thumbprint)

    def apply(self, form: dict[str, str], headers: dict[str, str], token_endpoint: str, now: float) -> None:
        """Add a freshly signed client assertion to a token request."""
        assertion = private_key_jwt_sign(
            self.key,
            self.client_id,
            token_endpoint,
            alg="RS256",
            header={"x5t#S256": self.thumbprint_s256, "typ": "JWT"},
            issued_at=int(now),
            expires_in=ASSERTION_LIFETIME,
            claims={"nbf": int(now)},
        )
        form["client_id"] = self.client_id
        form["client_assertion_type"] = ASSERTION_TYPE
        form["client_assertion"] = assertion if isinstance(assertion, str) else assertion.decode("ascii")


ClientCredential = SecretCredential | CertificateCredential


def load_credential(tenant: TenantConfig, base_dir: Path) -> ClientCredential:
    """The credential a company is configured with (the config validator guarantees exactly one)."""
    if tenant.certificate is not None:
        return CertificateCredential.load(
            tenant.client_id,
            (base_dir / tenant.certificate.key_file).read_bytes(),
            (base_dir / tenant.certificate.cert_file).read_bytes(),
        )
    return SecretCredential(tenant.client_id, tenant.client_secret or "", tenant.client_secret_method)

"""The tests' one certificate helper, built with cryptography and pyjwt: self-signed RSA client certificates
and their ``private_key_jwt`` assertions (the broker's certificate credential, the dev IdP's registered
certificates, ``entra-setup``'s thumbprints), and a throw-away certificate authority for TLS servers and
clients (https upstreams, Redis over TLS)."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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


@dataclass(frozen=True)
class Issued:
    """A key and certificate written as PEM files."""

    key_file: Path
    cert_file: Path


def _write(directory: Path, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> Issued:
    stem = name.replace(" ", "-").lower()
    key_file, cert_file = directory / f"{stem}.key", directory / f"{stem}.crt"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issued(key_file, cert_file)


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """digitalSignature for a leaf; keyCertSign and cRLSign for a CA."""
    return x509.KeyUsage(
        not signs_certificates,
        False,
        False,
        False,
        False,
        signs_certificates,
        signs_certificates,
        False,
        False,
    )


class TestCA:
    """A throw-away certificate authority (P-256: a key in a millisecond, unlike RSA) issuing server and
    client certificates with the extensions strict X.509 verification expects (Python 3.13 turns it on by
    default): key identifiers, key usage, basic constraints."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, directory: Path, name: str = "Broker Test CA") -> None:
        self.directory = directory
        self.name = name
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self._cert = self._sign(
            self._subject,
            self._key,
            x509.BasicConstraints(ca=True, path_length=0),
            _key_usage(signs_certificates=True),
        )
        self.files = _write(directory, name, self._key, self._cert)

    def _sign(
        self, subject: x509.Name, key: ec.EllipticCurvePrivateKey, *extensions: x509.ExtensionType
    ) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )
        for extension in extensions:
            critical = isinstance(extension, x509.BasicConstraints | x509.KeyUsage)
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(self._key, hashes.SHA256())

    def issue(self, common_name: str, *, client: bool = False) -> Issued:
        """A leaf certificate: for 127.0.0.1 and localhost (server) or for a client (mutual TLS)."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        extensions: list[x509.ExtensionType] = [
            x509.BasicConstraints(ca=False, path_length=None),
            _key_usage(signs_certificates=False),
            x509.ExtendedKeyUsage([usage]),
        ]
        if not client:
            addresses = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            extensions.append(x509.SubjectAlternativeName(addresses))
        return _write(self.directory, common_name, key, self._sign(subject, key, *extensions))

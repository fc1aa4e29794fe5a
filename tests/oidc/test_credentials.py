"""Client credentials: the certificate assertion Entra expects, and secrets in the right place."""

from __future__ import annotations

import base64
import time

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from broker.oidc.credentials import ASSERTION_TYPE, CertificateCredential, SecretCredential
from tests.support.certs import ClientCertificate

CLIENT = "6a4f3e2d-1c0b-4a9f-8e7d-6c5b4a3f2e1d"
TOKEN_URL = "https://login.example/3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c/oauth2/v2.0/token"


def test_certificate_assertion_matches_entra_rules() -> None:
    generated = ClientCertificate.generate()
    key_pem, cert_pem = generated.key_pem, generated.certificate_pem
    credential = CertificateCredential.load(CLIENT, key_pem, cert_pem)
    form: dict[str, str] = {}
    now = time.time()
    credential.apply(form, {}, TOKEN_URL, now)
    assert form["client_assertion_type"] == ASSERTION_TYPE and form["client_id"] == CLIENT
    assert "client_secret" not in form
    assertion = form["client_assertion"]
    cert = x509.load_pem_x509_certificate(cert_pem)
    header = jwt.get_unverified_header(assertion)
    expected_thumbprint = base64.urlsafe_b64encode(cert.fingerprint(hashes.SHA256())).rstrip(b"=").decode()
    assert header["alg"] == "RS256" and header["x5t#S256"] == expected_thumbprint
    claims = jwt.decode(assertion, cert.public_key(), algorithms=["RS256"], audience=TOKEN_URL)  # type: ignore[arg-type]
    assert claims["iss"] == claims["sub"] == CLIENT
    assert claims["exp"] - claims["iat"] <= 600 and claims["nbf"] <= now + 1 and claims["jti"]
    form2: dict[str, str] = {}
    credential.apply(form2, {}, TOKEN_URL, now)
    assert jwt.decode(form2["client_assertion"], options={"verify_signature": False})["jti"] != claims["jti"]


def test_key_that_does_not_match_the_certificate_is_refused() -> None:
    key_pem = ClientCertificate.generate().key_pem
    other_cert = ClientCertificate.generate().certificate_pem
    with pytest.raises(ValueError, match="does not match"):
        CertificateCredential.load(CLIENT, key_pem, other_cert)


def test_secret_post_and_basic() -> None:
    form: dict[str, str] = {}
    headers: dict[str, str] = {}
    SecretCredential(CLIENT, "s3cr+t/=", "post").apply(form, headers, TOKEN_URL, 0)
    assert form == {"client_id": CLIENT, "client_secret": "s3cr+t/="} and headers == {}
    form, headers = {}, {}
    SecretCredential(CLIENT, "s3cr+t/=", "basic").apply(form, headers, TOKEN_URL, 0)
    assert "client_secret" not in form
    decoded = base64.b64decode(headers["Authorization"].removeprefix("Basic ")).decode()
    assert decoded == f"{CLIENT}:s3cr%2Bt%2F%3D"  # RFC 6749 2.3.1: form-urlencoded before base64

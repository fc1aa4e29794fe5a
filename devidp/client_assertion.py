"""``private_key_jwt`` (RFC 7523 2.2, OIDC Core 9): verify a client assertion as Entra does.

Checks, in Entra's order: the header names a registered certificate (``x5t#S256`` or ``x5t``), the
signature verifies with that certificate's key (RS256 or PS256 only), ``iss`` = ``sub`` = the client ID,
``aud`` is the token endpoint exactly as called, the lifetime is current and at most ten minutes, and the
``jti`` was never seen before.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from devidp.errors import AadstsError
from devidp.model import DevClient

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Entra refuses assertions valid for longer than ten minutes.
MAX_ASSERTION_LIFETIME = 600
# The algorithms Entra accepts for certificate credentials; "none" and HMAC are never acceptable.
_ALGORITHMS = ("RS256", "PS256")
_ONLY_SIGNATURE: jwt.types.Options = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}


class SeenAssertions:
    """``jti`` values already used, remembered until their assertion expires (then a replay fails anyway)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}

    def first_use(self, client_id: str, jti: str, expires_at: float, now: float) -> bool:
        """Record ``jti`` for ``client_id``; ``False`` if it was used before."""
        for key in [k for k, exp in self._seen.items() if exp < now]:
            del self._seen[key]
        key = (client_id.lower(), jti)
        if key in self._seen:
            return False
        self._seen[key] = expires_at
        return True


@dataclass(frozen=True)
class AssertionCheck:
    """What the token endpoint knows when it checks an assertion."""

    client: DevClient
    audience: str
    now: float


def assertion_issuer(assertion: str) -> str | None:
    """The assertion's unverified ``iss``: names the client when the request has no ``client_id``."""
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise malformed("the client assertion is not a JWT") from None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else None


def verify_client_assertion(assertion: str, check: AssertionCheck, seen: SeenAssertions) -> None:
    """Raise the AADSTS error Entra would answer unless ``assertion`` authenticates ``check.client``."""
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise malformed("the client assertion is not a JWT") from None
    certificate = _registered_certificate(header, check.client)
    algorithm = header.get("alg")
    public_key = certificate.public_key()
    if algorithm not in _ALGORITHMS or not isinstance(public_key, RSAPublicKey):
        raise signature_validation_failed(f"Unsupported signing algorithm {algorithm!r}; use RS256 or PS256.")
    try:
        claims = jwt.decode(assertion, public_key, algorithms=[str(algorithm)], options=_ONLY_SIGNATURE)
    except jwt.InvalidSignatureError:
        raise invalid_signature() from None
    except jwt.PyJWTError:
        raise malformed("the client assertion cannot be decoded") from None
    _check_issuer_and_subject(claims, check.client)
    _check_audience(claims, check.audience)
    expires_at = _check_lifetime(claims, check.now)
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise malformed("the client assertion has no 'jti' claim")
    # RFC 7523 3 (item 7): the server may reject a replayed jti; Entra does, within the assertion's life.
    if not seen.first_use(check.client.client_id, jti, expires_at, check.now):
        raise assertion_replayed(jti)


def _registered_certificate(header: dict[str, Any], client: DevClient) -> x509.Certificate:
    sha256 = header.get("x5t#S256")
    sha1 = header.get("x5t")
    if not sha256 and not sha1:
        raise signature_validation_failed("The client assertion header has no x5t#S256 or x5t thumbprint.")
    for certificate in client.certificates():
        # RFC 7515 4.1.7/4.1.8: base64url of the DER certificate's SHA-1 / SHA-256 digest.
        if sha256 == _b64url(certificate.fingerprint(hashes.SHA256())):
            return certificate
        if sha1 == _b64url(certificate.fingerprint(hashes.SHA1())):
            return certificate
    raise certificate_not_registered(_display_thumbprint(str(sha1 or sha256)), client.client_id)


def _check_issuer_and_subject(claims: dict[str, Any], client: DevClient) -> None:
    wanted = client.client_id.lower()
    for name in ("iss", "sub"):
        value = claims.get(name)
        if not isinstance(value, str) or value.lower() != wanted:
            raise assertion_claim_invalid(
                f"The client assertion's '{name}' claim must be the client ID '{client.client_id}', "
                f"got {value!r}."
            )


def _check_audience(claims: dict[str, Any], audience: str) -> None:
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if audience not in audiences:
        raise assertion_claim_invalid(
            "Client assertion audience claim does not match Realm issuer. "
            f"Expected '{audience}', got {aud!r}."
        )


def _check_lifetime(claims: dict[str, Any], now: float) -> float:
    exp, nbf, iat = (claims.get(name) for name in ("exp", "nbf", "iat"))
    start = nbf if _is_time(nbf) else iat
    if not _is_time(exp) or not _is_time(start):
        raise assertion_not_current(
            now, None, None, "The client assertion needs numeric exp and nbf (or iat)."
        )
    assert isinstance(exp, int | float) and isinstance(start, int | float)  # narrowed by _is_time
    if not (start <= now < exp):
        raise assertion_not_current(now, start, exp, None)
    if exp - start > MAX_ASSERTION_LIFETIME:
        raise assertion_not_current(now, start, exp, "Client assertions may be valid for at most 10 minutes.")
    return float(exp)


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _display_thumbprint(value: str) -> str:
    # Entra names the certificate by its hex thumbprint, as the portal lists it.
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex().upper()
    except (binascii.Error, ValueError):
        return value


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime(moment))


# Entra's answers; all are invalid_client with 401, since the client failed to authenticate.


def malformed(reason: str) -> AadstsError:
    """AADSTS50027: the assertion is not a well-formed JWT with the required claims."""
    return AadstsError("invalid_client", 50027, f"JWT token is invalid or malformed: {reason}.", status=401)


def certificate_not_registered(thumbprint: str, client_id: str) -> AadstsError:
    """AADSTS700027: no certificate with the header's thumbprint is registered on the app."""
    return AadstsError(
        "invalid_client",
        700027,
        "The certificate with identifier used to sign the client assertion is not registered on "
        f"application. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}', "
        f"Please visit the Azure Portal to see configured keys for app Id '{client_id}'.]",
        status=401,
    )


def signature_validation_failed(reason: str) -> AadstsError:
    """AADSTS700027: the assertion cannot be checked against a certificate at all."""
    return AadstsError(
        "invalid_client", 700027, f"Client assertion failed signature validation. {reason}", status=401
    )


def invalid_signature() -> AadstsError:
    """AADSTS700027: the registered certificate's key does not verify the signature."""
    return AadstsError(
        "invalid_client", 700027, "Client assertion contains an invalid signature.", status=401
    )


def assertion_claim_invalid(message: str) -> AadstsError:
    """AADSTS50012: ``iss``/``sub`` is not the client, or ``aud`` is not this token endpoint."""
    return AadstsError("invalid_client", 50012, message, status=401)


def assertion_not_current(
    now: float, start: float | None, exp: float | None, reason: str | None
) -> AadstsError:
    """AADSTS700024: expired, not yet valid, or valid for too long."""
    message = f"Client assertion is not within its valid time range. Current time: {_iso(now)}"
    if start is not None and exp is not None:
        message += f", assertion valid from {_iso(start)}, expiry time of assertion {_iso(exp)}"
    message += "." + (f" {reason}" if reason else "")
    return AadstsError("invalid_client", 700024, message, status=401)


def assertion_replayed(jti: str) -> AadstsError:
    """AADSTS50013: the assertion's ``jti`` was used before; assertions are single-use."""
    return AadstsError(
        "invalid_client",
        50013,
        f"Assertion is invalid: a client assertion with jti '{jti}' was already used. Create a new "
        "assertion (with a new jti) for every request.",
        status=401,
    )

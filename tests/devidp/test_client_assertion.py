"""Certificate credentials (``private_key_jwt``) at the token endpoint, every rule Entra enforces."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes

from tests.devidp.conftest import Starter
from tests.devidp.harness import (
    CONTOSO_CLIENT,
    CONTOSO_ID,
    CONTOSO_SECRET,
    FABRIKAM_CLIENT,
    REDIRECT_URI,
    DevIdpHarness,
    Pkce,
    assert_entra_error,
    make_config,
    verify_id_token,
)
from tests.support.certs import ClientCertificate, assertion_form


@pytest.fixture
async def cert_idp(start: Starter, client_cert: ClientCertificate) -> AsyncIterator[DevIdpHarness]:
    """Contoso's app with a certificate and no secret at all."""
    config = make_config()
    contoso = config.tenants[0]
    contoso.clients[0] = dataclasses.replace(
        contoso.clients[0], client_secret="", certificate_pem=client_cert.pem
    )
    async with start(config) as harness:
        yield harness


def token_url(idp: DevIdpHarness, segment: str = CONTOSO_ID) -> str:
    return idp.url(segment, "oauth2/v2.0/token")


async def code_grant(idp: DevIdpHarness, scope: str = "openid profile") -> dict[str, str]:
    """A fresh authorization-code grant for Adele, without any client credential."""
    pkce = Pkce.new()
    code = await idp.code_for(idp.authorize_params(pkce, scope=scope))
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": pkce.verifier,
    }


async def redeem_with(
    idp: DevIdpHarness, assertion: str, client_id: str | None = CONTOSO_CLIENT, **extra: str
) -> tuple[int, dict[str, Any]]:
    data = await code_grant(idp) | assertion_form(assertion, client_id) | extra
    return await idp.token(data, raw=True)


def assertion(idp: DevIdpHarness, cert: ClientCertificate, **options: Any) -> str:
    return cert.assertion(CONTOSO_CLIENT, token_url(idp), idp.clock(), **options)


# Accepted


@pytest.mark.parametrize("thumbprint", ["x5t#S256", "x5t"])
@pytest.mark.parametrize("client_id", [CONTOSO_CLIENT, None])
async def test_certificate_signs_in(
    cert_idp: DevIdpHarness, client_cert: ClientCertificate, thumbprint: str, client_id: str | None
) -> None:
    status, body = await redeem_with(
        cert_idp, assertion(cert_idp, client_cert, thumbprint=thumbprint), client_id
    )
    assert status == 200, body
    assert (await verify_id_token(cert_idp, body["id_token"]))["aud"] == CONTOSO_CLIENT


async def test_ps256_and_refresh_with_a_certificate(
    cert_idp: DevIdpHarness, client_cert: ClientCertificate
) -> None:
    data = await code_grant(cert_idp, scope="openid offline_access")
    data |= assertion_form(assertion(cert_idp, client_cert, algorithm="PS256"))
    status, body = await cert_idp.token(data, raw=True)
    assert status == 200, body
    refresh = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    status, body = await cert_idp.token(refresh | assertion_form(assertion(cert_idp, client_cert)), raw=True)
    assert status == 200, body


async def test_a_client_with_both_may_use_either(start: Starter, client_cert: ClientCertificate) -> None:
    config = make_config()
    config.tenants[0].clients[0].certificate_pem = client_cert.pem
    async with start(config) as idp:
        status, _ = await redeem_with(idp, assertion(idp, client_cert))
        assert status == 200
        pkce = Pkce.new()
        status, _ = await idp.redeem(await idp.code_for(idp.authorize_params(pkce)), pkce)
        assert status == 200


# Refused


async def test_unregistered_certificate_is_700027(
    cert_idp: DevIdpHarness, other_cert: ClientCertificate
) -> None:
    status, body = await redeem_with(cert_idp, assertion(cert_idp, other_cert))
    assert status == 401
    assert_entra_error(body, "invalid_client", 700027)
    assert "is not registered on application" in body["error_description"]
    # Entra names the thumbprint the client used, in hex as the portal shows it.
    thumbprint = other_cert.certificate.fingerprint(hashes.SHA256()).hex().upper()
    assert thumbprint in body["error_description"]


async def test_registered_thumbprint_but_another_key_is_an_invalid_signature(
    cert_idp: DevIdpHarness, client_cert: ClientCertificate, other_cert: ClientCertificate
) -> None:
    impostor = ClientCertificate(other_cert.key, client_cert.certificate)
    status, body = await redeem_with(cert_idp, assertion(cert_idp, impostor))
    assert status == 401
    assert_entra_error(body, "invalid_client", 700027)
    assert "Client assertion contains an invalid signature." in body["error_description"]


async def test_hmac_assertion_is_refused(cert_idp: DevIdpHarness, client_cert: ClientCertificate) -> None:
    claims: dict[str, Any] = {"aud": token_url(cert_idp), "iss": CONTOSO_CLIENT, "sub": CONTOSO_CLIENT}
    claims |= {"jti": "j", "nbf": int(cert_idp.clock()), "exp": int(cert_idp.clock()) + 60}
    forged = jwt.encode(
        claims, "a-shared-secret-long-enough-for-hs256!", headers={"x5t#S256": client_cert.x5t_s256}
    )
    status, body = await redeem_with(cert_idp, forged)
    assert status == 401
    assert_entra_error(body, "invalid_client", 700027)


@pytest.mark.parametrize(
    "audience",
    [
        "{base}/{fabrikam}/oauth2/v2.0/token",
        "{base}/contoso.example/oauth2/v2.0/token",
        "{base}/{contoso}/oauth2/v2.0/token/",
        "https://login.microsoftonline.com/{contoso}/oauth2/v2.0/token",
    ],
)
async def test_audience_must_be_the_token_endpoint_as_called(
    cert_idp: DevIdpHarness, client_cert: ClientCertificate, audience: str
) -> None:
    aud = audience.format(
        base=cert_idp.base, contoso=CONTOSO_ID, fabrikam="8b7c6d5e-4f3a-4b2c-9d1e-0f9a8b7c6d5e"
    )
    status, body = await redeem_with(cert_idp, assertion(cert_idp, client_cert, aud=aud))
    assert status == 401
    assert_entra_error(body, "invalid_client", 50012)
    assert "audience" in body["error_description"]


async def test_audience_follows_the_path_used(
    cert_idp: DevIdpHarness, client_cert: ClientCertificate
) -> None:
    data = await code_grant(cert_idp)
    signed = client_cert.assertion(CONTOSO_CLIENT, token_url(cert_idp, "contoso.example"), cert_idp.clock())
    status, body = await cert_idp.token(data | assertion_form(signed), tenant="contoso.example", raw=True)
    assert status == 200, body


@pytest.mark.parametrize(
    ("times", "reason"),
    [
        ((-900, -900, -300), "expired"),
        ((300, 300, 600), "not yet valid"),
        ((0, 0, 601), "valid for more than ten minutes"),
        ((None, None, 300), "no start"),
    ],
)
async def test_time_invalid_assertion_is_700024(
    cert_idp: DevIdpHarness,
    client_cert: ClientCertificate,
    times: tuple[int | None, int | None, int],
    reason: str,
) -> None:
    now = int(cert_idp.clock())
    nbf, iat, exp = (None if t is None else now + t for t in times)
    status, body = await redeem_with(cert_idp, assertion(cert_idp, client_cert, nbf=nbf, iat=iat, exp=exp))
    assert status == 401, reason
    assert_entra_error(body, "invalid_client", 700024)
    assert "Client assertion is not within its valid time range." in body["error_description"]


async def test_jti_is_single_use(cert_idp: DevIdpHarness, client_cert: ClientCertificate) -> None:
    signed = assertion(cert_idp, client_cert)
    assert (await redeem_with(cert_idp, signed))[0] == 200
    status, body = await redeem_with(cert_idp, signed)
    assert status == 401
    assert_entra_error(body, "invalid_client", 50013)
    assert "already used" in body["error_description"]


async def test_missing_jti_is_malformed(cert_idp: DevIdpHarness, client_cert: ClientCertificate) -> None:
    status, body = await redeem_with(cert_idp, assertion(cert_idp, client_cert, jti=None))
    assert status == 401
    assert_entra_error(body, "invalid_client", 50027)


@pytest.mark.parametrize(
    ("claims", "client_id"),
    [
        ({"iss": FABRIKAM_CLIENT, "sub": FABRIKAM_CLIENT}, CONTOSO_CLIENT),  # body and assertion disagree
        ({"sub": FABRIKAM_CLIENT}, CONTOSO_CLIENT),  # iss != sub
        ({"sub": FABRIKAM_CLIENT}, None),
        ({"iss": None}, CONTOSO_CLIENT),
    ],
)
async def test_iss_and_sub_must_be_the_client_id(
    cert_idp: DevIdpHarness, client_cert: ClientCertificate, claims: dict[str, Any], client_id: str | None
) -> None:
    status, body = await redeem_with(cert_idp, assertion(cert_idp, client_cert, **claims), client_id)
    assert status == 401
    assert_entra_error(body, "invalid_client", 50012)


async def test_certificate_only_client_sending_a_secret_is_7000215(cert_idp: DevIdpHarness) -> None:
    for secret in (CONTOSO_SECRET, ""):
        data = await code_grant(cert_idp)
        status, body = await cert_idp.token(
            data | {"client_id": CONTOSO_CLIENT, "client_secret": secret}, raw=True
        )
        assert status == 401
        assert_entra_error(body, "invalid_client", 7000215)


async def test_secret_only_client_sending_an_assertion_is_700027(
    idp: DevIdpHarness, client_cert: ClientCertificate
) -> None:
    status, body = await redeem_with(idp, assertion(idp, client_cert))
    assert status == 401
    assert_entra_error(body, "invalid_client", 700027)


async def test_assertion_needs_its_type_and_excludes_a_secret(
    cert_idp: DevIdpHarness, client_cert: ClientCertificate
) -> None:
    signed = assertion(cert_idp, client_cert)
    data = await code_grant(cert_idp) | {"client_assertion": signed, "client_id": CONTOSO_CLIENT}
    status, body = await cert_idp.token(data, raw=True)
    assert_entra_error(body, "invalid_request", 900144)
    status, body = await cert_idp.token(data | {"client_assertion_type": "urn:other"}, raw=True)
    assert_entra_error(body, "invalid_request", 90023)
    status, body = await cert_idp.token(data | assertion_form(signed) | {"client_secret": "x"}, raw=True)
    assert status == 400
    assert_entra_error(body, "invalid_request", 90023)
    status, body = await cert_idp.token(data | assertion_form("not-a-jwt"), raw=True)
    assert status == 401
    assert_entra_error(body, "invalid_client", 50027)

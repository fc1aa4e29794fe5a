"""Discovery and JWKS over real HTTP: Entra's shape, issuer from the configured authority."""

from __future__ import annotations

import jwt
import pytest

from tests.devidp.harness import (
    CONTOSO_ID,
    FABRIKAM_ID,
    DevIdpHarness,
    assert_entra_error,
)

# Discovery and keys


@pytest.mark.parametrize("segment", [CONTOSO_ID, "contoso.example", CONTOSO_ID.upper()])
async def test_discovery_is_entra_shaped_and_uses_the_tenant_guid(idp: DevIdpHarness, segment: str) -> None:
    async with idp.session.get(idp.url(segment, "v2.0/.well-known/openid-configuration")) as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"].startswith("max-age=86400")
        doc = await resp.json()
    tenant_base = f"{idp.base}/{CONTOSO_ID}"
    assert doc["issuer"] == f"{tenant_base}/v2.0"
    assert doc["authorization_endpoint"] == f"{tenant_base}/oauth2/v2.0/authorize"
    assert doc["token_endpoint"] == f"{tenant_base}/oauth2/v2.0/token"
    assert doc["jwks_uri"] == f"{tenant_base}/discovery/v2.0/keys"
    assert doc["end_session_endpoint"] == f"{tenant_base}/oauth2/v2.0/logout"
    assert doc["token_endpoint_auth_methods_supported"] == [
        "client_secret_post",
        "private_key_jwt",
        "client_secret_basic",
    ]
    assert doc["response_modes_supported"] == ["query", "fragment", "form_post"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["subject_types_supported"] == ["pairwise"]
    assert doc["frontchannel_logout_supported"] is True
    assert "openid" in doc["scopes_supported"] and "oid" in doc["claims_supported"]
    # Real Entra advertises neither, and the broker must not depend on them.
    assert "code_challenge_methods_supported" not in doc
    assert not any(key.startswith("backchannel") for key in doc)


async def test_discovery_ignores_the_host_header(idp: DevIdpHarness) -> None:
    url = idp.url(CONTOSO_ID, "v2.0/.well-known/openid-configuration")
    async with idp.session.get(url, headers={"Host": "evil.example"}) as resp:
        doc = await resp.json()
    assert doc["issuer"] == idp.issuer(CONTOSO_ID)


async def test_unknown_tenant_is_aadsts90002(idp: DevIdpHarness) -> None:
    async with idp.session.get(idp.url("nowhere.example", "v2.0/.well-known/openid-configuration")) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert_entra_error(body, "invalid_tenant", 90002)
    assert "Tenant 'nowhere.example' not found" in body["error_description"]


async def test_client_request_id_becomes_the_correlation_id(idp: DevIdpHarness) -> None:
    request_id = "0b9c3a4e-1f2d-4c5b-8a6e-7d9f0a1b2c3d"
    url = idp.url("nowhere", "v2.0/.well-known/openid-configuration")
    async with idp.session.get(url, headers={"client-request-id": request_id}) as resp:
        body = await resp.json()
    assert body["correlation_id"] == request_id


async def test_jwks_publishes_one_rsa_signing_key(idp: DevIdpHarness) -> None:
    async with idp.session.get(idp.url(FABRIKAM_ID, "discovery/v2.0/keys")) as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"].startswith("max-age=86400")
        jwks = await resp.json()
    (key,) = jwks["keys"]
    assert key["kty"] == "RSA" and key["use"] == "sig" and key["e"] == "AQAB"
    assert key["kid"] and key["n"] and key["x5t"] == key["kid"]
    assert jwt.PyJWKSet.from_dict(jwks).keys[0].key_id == key["kid"]

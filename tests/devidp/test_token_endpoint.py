"""The token endpoint over real HTTP: every Entra error case, and refresh-token rotation."""

from __future__ import annotations

from tests.devidp.harness import (
    ADELE_OID,
    CONTOSO_CLIENT,
    CONTOSO_ID,
    CONTOSO_SECRET,
    FABRIKAM_ID,
    REDIRECT_URI,
    DevIdpHarness,
    Pkce,
    assert_entra_error,
    basic_auth,
    verify_id_token,
)

# Token endpoint errors


async def test_wrong_secret_is_aadsts7000215(idp: DevIdpHarness) -> None:
    code = await idp.code_for(idp.authorize_params(pkce := Pkce.new()))
    status, body = await idp.redeem(code, pkce, client_secret="not-the-secret")
    assert status == 401
    assert_entra_error(body, "invalid_client", 7000215)
    assert "not the client secret ID" in body["error_description"]


async def test_wrong_basic_secret_is_401_with_www_authenticate(idp: DevIdpHarness) -> None:
    data = {
        "grant_type": "authorization_code",
        "code": "x",
        "redirect_uri": REDIRECT_URI,
        "code_verifier": "y",
    }
    url = idp.url(CONTOSO_ID, "oauth2/v2.0/token")
    headers = {"Authorization": basic_auth(CONTOSO_CLIENT, "wrong")}
    async with idp.session.post(url, data=data, headers=headers) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic")
        assert_entra_error(await resp.json(), "invalid_client", 7000215)


async def test_unknown_client_at_token_endpoint_is_aadsts700016(idp: DevIdpHarness) -> None:
    status, body = await idp.token(
        {"grant_type": "authorization_code", "client_id": "11111111-2222-4333-8444-555555555555"}
    )
    assert status == 400
    assert_entra_error(body, "unauthorized_client", 700016)


async def test_code_reuse_is_aadsts54005(idp: DevIdpHarness) -> None:
    code = await idp.code_for(idp.authorize_params(pkce := Pkce.new()))
    assert (await idp.redeem(code, pkce))[0] == 200
    status, body = await idp.redeem(code, pkce)
    assert status == 400
    assert_entra_error(body, "invalid_grant", 54005)


async def test_pkce_mismatch_is_aadsts501481(idp: DevIdpHarness) -> None:
    code = await idp.code_for(idp.authorize_params(Pkce.new()))
    status, body = await idp.redeem(code, Pkce.new())
    assert status == 400
    assert_entra_error(body, "invalid_grant", 501481)
    assert "The Code_Verifier does not match the code_challenge" in body["error_description"]


async def test_expired_code_is_aadsts70008(idp: DevIdpHarness) -> None:
    code = await idp.code_for(idp.authorize_params(pkce := Pkce.new()))
    idp.clock.advance(601)
    status, body = await idp.redeem(code, pkce)
    assert status == 400
    assert_entra_error(body, "invalid_grant", 70008)


async def test_unknown_code_is_aadsts70008(idp: DevIdpHarness) -> None:
    status, body = await idp.redeem("made-up", Pkce.new())
    assert status == 400
    assert_entra_error(body, "invalid_grant", 70008)


async def test_redirect_uri_differing_from_authorize_is_aadsts500112(idp: DevIdpHarness) -> None:
    code = await idp.code_for(idp.authorize_params(pkce := Pkce.new()))
    status, body = await idp.redeem(code, pkce, redirect_uri="http://localhost:9999/.auth/callback")
    assert status == 400
    assert_entra_error(body, "invalid_grant", 500112)


async def test_a_client_of_one_tenant_is_unknown_in_another(idp: DevIdpHarness) -> None:
    code = await idp.code_for(idp.authorize_params(pkce := Pkce.new()))
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    data |= {"code_verifier": pkce.verifier, "client_id": CONTOSO_CLIENT, "client_secret": CONTOSO_SECRET}
    status, body = await idp.token(data, tenant=FABRIKAM_ID)
    assert status == 400
    assert_entra_error(body, "unauthorized_client", 700016)


async def test_missing_parameter_and_unsupported_grant(idp: DevIdpHarness) -> None:
    status, body = await idp.token({"grant_type": "authorization_code"})
    assert status == 400
    assert_entra_error(body, "invalid_request", 900144)
    assert "'code'" in body["error_description"]
    status, body = await idp.token({"grant_type": "password"})
    assert status == 400
    assert_entra_error(body, "unsupported_grant_type", 70003)
    status, body = await idp.token({})
    assert_entra_error(body, "invalid_request", 900144)


# Refresh tokens


async def test_refresh_rotates_and_recomputes_claims(idp: DevIdpHarness) -> None:
    pkce = Pkce.new()
    code = await idp.code_for(idp.authorize_params(pkce, scope="openid profile email offline_access"))
    status, first = await idp.redeem(code, pkce)
    assert status == 200 and first["refresh_token"]
    first_claims = await verify_id_token(idp, first["id_token"])

    # An administrator renames Adele and changes her roles: the next refresh must show it.
    adele = idp.config.tenants[0].users[0]
    adele.name = "Adele Vance-Smith"
    adele.roles = ["Wiki.Reader"]
    status, second = await idp.token({"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert status == 200, second
    assert second["refresh_token"] != first["refresh_token"]
    claims = await verify_id_token(idp, second["id_token"])
    assert claims["name"] == "Adele Vance-Smith" and claims["roles"] == ["Wiki.Reader"]
    assert "nonce" not in claims
    assert (claims["sub"], claims["sid"], claims["oid"]) == (
        first_claims["sub"],
        first_claims["sid"],
        ADELE_OID,
    )

    # Entra does not revoke the previous refresh token when it issues a new one.
    status, third = await idp.token({"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert status == 200 and third["refresh_token"] not in (first["refresh_token"], second["refresh_token"])


async def test_unknown_and_expired_refresh_tokens(idp: DevIdpHarness) -> None:
    status, body = await idp.token({"grant_type": "refresh_token", "refresh_token": "nope"})
    assert status == 400
    assert_entra_error(body, "invalid_grant", 70000)

    pkce = Pkce.new()
    code = await idp.code_for(idp.authorize_params(pkce, scope="openid offline_access"))
    _, tokens = await idp.redeem(code, pkce)
    idp.clock.advance(91 * 24 * 3600)
    status, body = await idp.token({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert status == 400
    assert_entra_error(body, "invalid_grant", 700082)

"""The dev IdP over real HTTP on loopback: discovery, keys, sign-in, tokens, errors and logout."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
import pytest

from broker.devidp import create_devidp_app
from broker.devidp.context import DEVIDP
from broker.devidp.tokens import GRAPH_APP_ID, pairwise_subject
from tests.devidp.harness import (
    ADELE_OID,
    CONTOSO_CLIENT,
    CONTOSO_ID,
    CONTOSO_SECRET,
    FABRIKAM_ID,
    GROUP_ID,
    LOGOUT_URI,
    REDIRECT_URI,
    DevIdpHarness,
    Pkce,
    basic_auth,
    make_config,
    parse_forms,
    query_of,
)

DESCRIPTION = re.compile(
    r"^AADSTS(\d+): .+\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: [0-9a-f-]{36}\r\n"
    r"Timestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$",
    re.DOTALL,
)


async def verify_id_token(idp: DevIdpHarness, token: str, tenant_id: str = CONTOSO_ID) -> dict[str, Any]:
    """Validate like a relying party: keys from jwks_uri, exact issuer and audience."""
    async with idp.session.get(idp.url(tenant_id, "v2.0/.well-known/openid-configuration")) as resp:
        metadata = await resp.json()
    async with idp.session.get(metadata["jwks_uri"]) as resp:
        jwks = jwt.PyJWKSet.from_dict(await resp.json())
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "JWT" and header["alg"] == "RS256"
    key = next(k for k in jwks.keys if k.key_id == header["kid"])
    claims: dict[str, Any] = jwt.decode(
        token, key, algorithms=["RS256"], audience=CONTOSO_CLIENT, issuer=metadata["issuer"]
    )
    return claims


def assert_entra_error(body: dict[str, Any], error: str, code: int) -> None:
    """Entra's token-endpoint error shape, exactly."""
    assert body["error"] == error
    assert body["error_codes"] == [code]
    match = DESCRIPTION.match(body["error_description"])
    assert match and match.group(1) == str(code), body["error_description"]
    assert body["trace_id"] in body["error_description"]
    assert body["correlation_id"] in body["error_description"]
    assert body["timestamp"] in body["error_description"]
    assert body["error_uri"].endswith(f"/error?code={code}")


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


# The authorization code flow


async def test_code_flow_with_query_and_client_secret_post(idp: DevIdpHarness) -> None:
    pkce = Pkce.new()
    params = idp.authorize_params(pkce)
    code = await idp.code_for(params)
    status, body = await idp.redeem(code, pkce)
    assert status == 200, body
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600 and body["ext_expires_in"] == 3600
    assert "openid" in body["scope"].split()
    assert "refresh_token" not in body  # no offline_access asked for

    claims = await verify_id_token(idp, body["id_token"])
    assert claims["iss"] == idp.issuer(CONTOSO_ID)
    assert claims["nonce"] == params["nonce"]
    assert claims["tid"] == CONTOSO_ID and claims["oid"] == ADELE_OID
    assert claims["sub"] == pairwise_subject(CONTOSO_ID, CONTOSO_CLIENT, ADELE_OID)
    assert claims["sub"] != claims["oid"]
    assert claims["ver"] == "2.0"
    assert claims["nbf"] == claims["iat"] and claims["exp"] == claims["iat"] + 3600
    assert claims["name"] == "Adele Vance"
    assert claims["preferred_username"] == "adele@contoso.example"
    assert claims["email"] == "adele@contoso.example"
    assert (claims["given_name"], claims["family_name"]) == ("Adele", "Vance")
    assert claims["roles"] == ["Wiki.Admin"] and claims["groups"] == [GROUP_ID]
    assert claims["sid"] and claims["uti"] and claims["rh"] and claims["login_hint"]

    async with idp.session.get(idp.url(CONTOSO_ID, "discovery/v2.0/keys")) as resp:
        key = jwt.PyJWKSet.from_dict(await resp.json()).keys[0]
    access = jwt.decode(body["access_token"], key, algorithms=["RS256"], audience=GRAPH_APP_ID)
    assert access["tid"] == CONTOSO_ID and access["oid"] == ADELE_OID and "User.Read" in access["scp"]


async def test_code_flow_with_form_post_and_client_secret_basic(idp: DevIdpHarness) -> None:
    pkce = Pkce.new()
    params = idp.authorize_params(pkce, response_mode="form_post")
    resp = await idp.pick(params, "adele@contoso.example")
    assert resp.status == 200
    page = await resp.text()
    (form,) = parse_forms(page)
    assert form.method == "post" and form.action == REDIRECT_URI
    assert form.value("state") == params["state"]
    assert "<noscript>" in page and ".submit()" in page
    code = form.value("code")
    assert code

    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    data["code_verifier"] = pkce.verifier
    status, body = await idp.token(data, authorization=basic_auth(CONTOSO_CLIENT, CONTOSO_SECRET))
    assert status == 200, body
    claims = await verify_id_token(idp, body["id_token"])
    assert claims["oid"] == ADELE_OID


async def test_users_without_optional_claims_get_none_of_them(idp: DevIdpHarness) -> None:
    pkce = Pkce.new()
    code = await idp.code_for(idp.authorize_params(pkce), "alex@contoso.example")
    _, body = await idp.redeem(code, pkce)
    claims = await verify_id_token(idp, body["id_token"])
    for absent in ("roles", "groups", "email", "given_name", "family_name"):
        assert absent not in claims


async def test_sign_in_page_lists_own_users_then_other_tenants(idp: DevIdpHarness) -> None:
    params = idp.authorize_params(Pkce.new())
    page = await idp.sign_in_page(params)
    assert re.search(r"<title>[^<]*Contoso[^<]*</title>", page)
    assert page.index("alex@contoso.example") < page.index("Use another account")
    assert page.index("Use another account") < page.index("megan@fabrikam.example")
    accounts = [f for f in parse_forms(page) if f.value("username")]
    assert [f.value("username") for f in accounts] == [
        "adele@contoso.example",
        "alex@contoso.example",
        "megan@fabrikam.example",
    ]
    for form in accounts:
        assert form.action == f"/{CONTOSO_ID}/oauth2/v2.0/authorize"
        assert {k: v for k, v in form.fields if k != "username"} == params
    # No external assets: everything the page needs is inline.
    assert "<link" not in page and "src=" not in page


async def test_domain_path_and_loopback_port_are_accepted(idp: DevIdpHarness) -> None:
    pkce = Pkce.new()
    other_port = "http://localhost:5555/.auth/callback"
    params = idp.authorize_params(pkce, redirect_uri=other_port)
    page = await idp.sign_in_page(params, tenant="contoso.example")
    form = next(f for f in parse_forms(page) if f.value("username") == "adele@contoso.example")
    async with idp.session.post(idp.base + form.action, data=form.fields, allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"].startswith(other_port + "?")
        code = query_of(resp.headers["Location"])["code"]
    status, body = await idp.redeem(code, pkce, redirect_uri=other_port)
    assert status == 200, body


# Authorize errors


async def test_unknown_client_is_shown_on_the_idp_page(idp: DevIdpHarness) -> None:
    params = idp.authorize_params(Pkce.new(), client_id="00000000-0000-0000-0000-000000000001")
    url = idp.url(CONTOSO_ID, "oauth2/v2.0/authorize")
    async with idp.session.get(url, params=params, allow_redirects=False) as resp:
        assert resp.status == 400
        assert "Location" not in resp.headers
        page = await resp.text()
    assert "AADSTS700016" in page
    assert (
        "Application with identifier &#x27;00000000-0000-0000-0000-000000000001&#x27; was not found" in page
    )


async def test_unregistered_redirect_uri_is_shown_on_the_idp_page(idp: DevIdpHarness) -> None:
    evil = "https://evil.example/.auth/callback"
    params = idp.authorize_params(Pkce.new(), redirect_uri=evil)
    url = idp.url(CONTOSO_ID, "oauth2/v2.0/authorize")
    async with idp.session.get(url, params=params, allow_redirects=False) as resp:
        assert resp.status == 400
        assert "Location" not in resp.headers
        page = await resp.text()
    assert "AADSTS50011" in page and evil in page
    # Case matters: Entra compares redirect URIs case-sensitively.
    params["redirect_uri"] = REDIRECT_URI.replace("callback", "Callback")
    async with idp.session.get(url, params=params, allow_redirects=False) as resp:
        assert resp.status == 400 and "AADSTS50011" in await resp.text()


async def test_user_from_another_tenant_gets_aadsts50020_at_the_redirect_uri(idp: DevIdpHarness) -> None:
    params = idp.authorize_params(Pkce.new())
    resp = await idp.pick(params, "megan@fabrikam.example")
    assert resp.status == 302
    location = resp.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    reply = query_of(location)
    assert reply["error"] == "invalid_request" and reply["state"] == params["state"]
    assert "code" not in reply
    assert DESCRIPTION.match(reply["error_description"])
    assert reply["error_description"].startswith(
        "AADSTS50020: User account 'megan@fabrikam.example' from identity provider "
        f"'{idp.issuer(FABRIKAM_ID)}' does not exist in tenant 'Contoso' and cannot access the application "
        f"'{CONTOSO_CLIENT}'"
    )
    assert reply["error_uri"].endswith("/error?code=50020")


@pytest.mark.parametrize(
    ("override", "error", "code"),
    [
        ({"code_challenge": ""}, "invalid_request", "900144"),
        ({"code_challenge_method": ""}, "invalid_request", "900144"),
        ({"code_challenge_method": "plain"}, "invalid_request", "90023"),
        ({"nonce": ""}, "invalid_request", "900144"),
        ({"scope": "profile email"}, "invalid_scope", "70011"),
        ({"response_type": "id_token"}, "unsupported_response_type", "700054"),
        ({"prompt": "none"}, "login_required", "50058"),
    ],
)
async def test_invalid_authorize_requests_are_sent_back_to_the_app(
    idp: DevIdpHarness, override: dict[str, str], error: str, code: str
) -> None:
    params = idp.authorize_params(Pkce.new(), **override)
    url = idp.url(CONTOSO_ID, "oauth2/v2.0/authorize")
    async with idp.session.get(url, params=params, allow_redirects=False) as resp:
        assert resp.status == 302
        reply = query_of(resp.headers["Location"])
    assert reply["error"] == error
    assert reply["error_description"].startswith(f"AADSTS{code}: ")
    assert reply["state"] == params["state"]


async def test_cancel_sends_access_denied(idp: DevIdpHarness) -> None:
    params = idp.authorize_params(Pkce.new(), response_mode="form_post")
    page = await idp.sign_in_page(params)
    cancel = next(f for f in parse_forms(page) if f.value("cancel"))
    async with idp.session.post(idp.base + cancel.action, data=cancel.fields) as resp:
        (form,) = parse_forms(await resp.text())
    assert form.value("error") == "access_denied" and form.value("state") == params["state"]
    # The "\r\n" separators survive HTML (browsers fold a literal CR LF in an attribute to LF).
    assert DESCRIPTION.match(form.value("error_description") or "")


async def test_fragment_response_mode(idp: DevIdpHarness) -> None:
    params = idp.authorize_params(Pkce.new(), response_mode="fragment")
    resp = await idp.pick(params, "adele@contoso.example")
    location = resp.headers["Location"]
    assert location.startswith(REDIRECT_URI + "#")
    reply = dict(parse_qsl(urlsplit(location).fragment))
    assert reply["code"] and reply["state"] == params["state"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/prefix", "127.0.0.1:9000", "ftp://x", "http://x?y=1"])
def test_public_url_must_be_an_origin(url: str) -> None:
    with pytest.raises(ValueError, match="public_url"):
        create_devidp_app(make_config(), url)


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


# Logout and robustness


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_logout_redirects_only_to_registered_uris(idp: DevIdpHarness, method: str) -> None:
    url = idp.url(CONTOSO_ID, "oauth2/v2.0/logout")
    params = {"post_logout_redirect_uri": LOGOUT_URI, "logout_hint": "opaque"}
    async with idp.session.request(method, url, params=params, allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == LOGOUT_URI
    params["post_logout_redirect_uri"] = "https://evil.example/"
    async with idp.session.request(method, url, params=params, allow_redirects=False) as resp:
        assert resp.status == 200 and "Location" not in resp.headers
        page = await resp.text()
    assert "You signed out of your account" in page and "evil.example" not in page


async def test_unexpected_errors_are_a_plain_500(idp: DevIdpHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_: object) -> str:
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(idp.app[DEVIDP].store, "issue_code", explode)
    resp = await idp.pick(idp.authorize_params(Pkce.new()), "adele@contoso.example")
    assert resp.status == 500
    page = await resp.text()
    assert "AADSTS90033" in page and "internal detail" not in page and "Traceback" not in page

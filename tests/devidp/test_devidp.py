"""The dev IdP over real HTTP on loopback: discovery, keys, sign-in, tokens, errors and logout."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

import jwt
import pytest

from devidp import create_devidp_app
from devidp.context import DEVIDP
from devidp.tokens import GRAPH_APP_ID, pairwise_subject
from tests.devidp.harness import (
    ADELE_OID,
    CONTOSO_CLIENT,
    CONTOSO_ID,
    CONTOSO_SECRET,
    DESCRIPTION,
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
    verify_id_token,
)

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

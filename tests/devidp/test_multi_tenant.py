"""``/organizations`` and ``/common``: a multi-tenant app signs in users of every tenant, tokens name home."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from devidp.tokens import pairwise_subject
from tests.devidp.conftest import Starter
from tests.devidp.harness import (
    ADELE_OID,
    CONTOSO_CLIENT,
    CONTOSO_ID,
    CONTOSO_SECRET,
    FABRIKAM_CLIENT,
    FABRIKAM_ID,
    LOGOUT_URI,
    MEGAN_OID,
    REDIRECT_URI,
    DevIdpHarness,
    Pkce,
    assert_entra_error,
    make_config,
    parse_forms,
    verify_id_token,
)

ALIASES = ["organizations", "common"]


@pytest.fixture
async def multi(start: Starter) -> AsyncIterator[DevIdpHarness]:
    """Contoso's app registration made multi-tenant; Fabrikam's stays single-tenant."""
    config = make_config()
    config.tenants[0].clients[0].multi_tenant = True
    async with start(config) as harness:
        yield harness


@pytest.mark.parametrize("alias", ALIASES)
async def test_discovery_names_the_issuer_template(multi: DevIdpHarness, alias: str) -> None:
    doc = await multi.get_json(multi.url(alias, "v2.0/.well-known/openid-configuration"))
    assert doc["issuer"] == f"{multi.base}/{{tenantid}}/v2.0"
    for key, path in [
        ("authorization_endpoint", "oauth2/v2.0/authorize"),
        ("token_endpoint", "oauth2/v2.0/token"),
        ("jwks_uri", "discovery/v2.0/keys"),
        ("end_session_endpoint", "oauth2/v2.0/logout"),
    ]:
        assert doc[key] == f"{multi.base}/{alias}/{path}"
    assert doc["tenant_region_scope"] is None
    jwks = await multi.get_json(doc["jwks_uri"])
    assert jwks["keys"] and all(k["issuer"] == doc["issuer"] for k in jwks["keys"])


@pytest.mark.parametrize("alias", ALIASES)
@pytest.mark.parametrize(
    ("username", "home", "oid"),
    [("megan@fabrikam.example", FABRIKAM_ID, MEGAN_OID), ("adele@contoso.example", CONTOSO_ID, ADELE_OID)],
)
async def test_any_tenant_signs_in_and_the_token_names_the_home_tenant(
    multi: DevIdpHarness, alias: str, username: str, home: str, oid: str
) -> None:
    pkce = Pkce.new()
    params = multi.authorize_params(pkce, scope="openid profile offline_access")
    code = await multi.code_for(params, username, tenant=alias)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    status, body = await multi.token(data | {"code_verifier": pkce.verifier}, tenant=alias)
    assert status == 200, body
    # A relying party substitutes tid into the template: that is the home tenant's own issuer.
    claims = await verify_id_token(multi, body["id_token"], home)
    assert (claims["tid"], claims["oid"], claims["iss"]) == (home, oid, multi.issuer(home))
    assert claims["sub"] == pairwise_subject(home, CONTOSO_CLIENT, oid)

    refresh = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    status, body = await multi.token(refresh, tenant=alias)
    assert status == 200, body
    assert (await verify_id_token(multi, body["id_token"], home))["tid"] == home


async def test_sign_in_page_lists_every_tenant(multi: DevIdpHarness) -> None:
    page = await multi.sign_in_page(multi.authorize_params(Pkce.new()), tenant="organizations")
    usernames = [f.value("username") for f in parse_forms(page) if f.value("username")]
    assert usernames == ["adele@contoso.example", "alex@contoso.example", "megan@fabrikam.example"]
    assert page.index("Contoso") < page.index("adele@") < page.index("Fabrikam") < page.index("megan@")
    assert all(f.action == "/organizations/oauth2/v2.0/authorize" for f in parse_forms(page))


async def test_the_home_tenant_path_still_works_and_still_refuses_other_tenants(multi: DevIdpHarness) -> None:
    _, body = await multi.sign_in()
    assert (await verify_id_token(multi, body["id_token"]))["tid"] == CONTOSO_ID
    resp = await multi.pick(multi.authorize_params(Pkce.new()), "megan@fabrikam.example")
    assert "AADSTS50020" in resp.headers["Location"].replace("%3A", ":")


async def test_a_fabrikam_code_is_not_redeemable_at_contoso(multi: DevIdpHarness) -> None:
    pkce = Pkce.new()
    code = await multi.code_for(multi.authorize_params(pkce), "megan@fabrikam.example", "organizations")
    status, body = await multi.redeem(code, pkce)  # at Contoso's own path
    assert status == 400
    assert_entra_error(body, "invalid_grant", 70000)


@pytest.mark.parametrize("alias", ALIASES)
async def test_single_tenant_app_is_700016_at_the_alias(multi: DevIdpHarness, alias: str) -> None:
    params = multi.authorize_params(Pkce.new(), client_id=FABRIKAM_CLIENT)
    async with multi.session.get(multi.url(alias, "oauth2/v2.0/authorize"), params=params) as resp:
        assert resp.status == 400 and "Location" not in resp.headers
        page = await resp.text()
    assert "AADSTS700016" in page and FABRIKAM_CLIENT in page

    data = {"grant_type": "authorization_code", "code": "x", "client_id": FABRIKAM_CLIENT}
    status, body = await multi.token(data | {"client_secret": "fabrikam-secret"}, tenant=alias)
    assert status == 400
    assert_entra_error(body, "unauthorized_client", 700016)


async def test_without_multi_tenant_the_alias_knows_no_app(idp: DevIdpHarness) -> None:
    params = idp.authorize_params(Pkce.new())
    async with idp.session.get(idp.url("organizations", "oauth2/v2.0/authorize"), params=params) as resp:
        assert resp.status == 400 and "AADSTS700016" in await resp.text()
    status, body = await idp.token({"grant_type": "authorization_code"}, tenant="organizations")
    assert_entra_error(body, "unauthorized_client", 700016)
    assert CONTOSO_SECRET not in str(body)


async def test_logout_at_the_alias_accepts_only_multi_tenant_apps_uris(
    start: Starter,
) -> None:
    config = make_config()
    contoso = config.tenants[0].clients[0]
    contoso.multi_tenant = True
    contoso.post_logout_redirect_uris = ["http://localhost:8080/.auth/logout/multi"]
    async with start(config) as idp:
        url = idp.url("organizations", "oauth2/v2.0/logout")
        for target, redirected in [
            ("http://localhost:8080/.auth/logout/multi", True),
            (LOGOUT_URI, False),  # registered by Fabrikam's single-tenant app only
        ]:
            params = {"post_logout_redirect_uri": target}
            async with idp.session.get(url, params=params, allow_redirects=False) as resp:
                assert (resp.status == 302) is redirected

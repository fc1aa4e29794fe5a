"""``authorize_error`` and ``token_error``: Entra's refusals, delivered where and how Entra delivers them."""

from __future__ import annotations

import dataclasses

import pytest

from devidp import create_devidp_app
from tests.devidp.conftest import Starter
from tests.devidp.harness import (
    ALEX_OID,
    CONTOSO_CLIENT,
    DESCRIPTION,
    REDIRECT_URI,
    DevIdpHarness,
    Pkce,
    assert_entra_error,
    make_config,
    parse_forms,
    query_of,
)

ALEX = "alex@contoso.example"


@pytest.mark.parametrize(
    ("code", "error", "text"),
    [
        (50105, "access_denied", "to block users unless they are specifically granted ('assigned') access"),
        (65001, "consent_required", "The user or administrator has not consented to use the application"),
        (53003, "access_denied", "Access has been blocked by Conditional Access policies."),
        (50076, "interaction_required", "you must use multi-factor authentication"),
    ],
)
async def test_authorize_error_goes_to_the_redirect_uri_instead_of_a_code(
    start: Starter, code: int, error: str, text: str
) -> None:
    config = make_config()
    config.tenants[0].users[1].authorize_error = code
    async with start(config) as idp:
        params = idp.authorize_params(Pkce.new())
        resp = await idp.pick(params, ALEX)
        assert resp.status == 302
        assert resp.headers["Location"].startswith(REDIRECT_URI + "?")
        reply = query_of(resp.headers["Location"])
    assert "code" not in reply
    assert reply["error"] == error and reply["state"] == params["state"]
    assert DESCRIPTION.match(reply["error_description"])
    assert reply["error_description"].startswith(f"AADSTS{code}: ") and text in reply["error_description"]
    assert reply["error_uri"].endswith(f"/error?code={code}")


async def test_authorize_error_honours_form_post_and_names_app_and_user(idp: DevIdpHarness) -> None:
    status, _ = await idp.control(f"users/{ALEX_OID}", {"authorize_error": 50105})
    assert status == 200
    params = idp.authorize_params(Pkce.new(), response_mode="form_post")
    resp = await idp.pick(params, ALEX)
    (form,) = parse_forms(await resp.text())
    assert form.action == REDIRECT_URI and form.value("error") == "access_denied"
    description = form.value("error_description") or ""
    assert f"Contoso Wiki ('{CONTOSO_CLIENT}')" in description and f"'{ALEX}'" in description
    # Other users still get codes.
    assert await idp.code_for(idp.authorize_params(Pkce.new()), "adele@contoso.example")


@pytest.mark.parametrize(
    ("code", "error", "status", "text"),
    [
        (7000215, "invalid_client", 401, "Invalid client secret provided."),
        (7000222, "invalid_client", 401, "client secret keys for app"),
        (65001, "invalid_grant", 400, "has not consented"),
        (53003, "invalid_grant", 400, "Conditional Access"),
        (700016, "unauthorized_client", 400, "was not found in the directory 'Contoso'"),
    ],
)
async def test_token_error_answers_every_request_of_the_client(
    start: Starter, code: int, error: str, status: int, text: str
) -> None:
    config = make_config()
    contoso = config.tenants[0]
    contoso.clients[0] = dataclasses.replace(contoso.clients[0], token_error=code)
    async with start(config) as idp:
        pkce = Pkce.new()
        got_status, body = await idp.redeem(await idp.code_for(idp.authorize_params(pkce)), pkce)
        assert got_status == status
        assert_entra_error(body, error, code)
        assert text in body["error_description"]
        # Before grant handling: even a nonsense grant gets the configured answer.
        got_status, body = await idp.token({"grant_type": "refresh_token", "refresh_token": "x"})
        assert (got_status, body["error_codes"]) == (status, [code])


@pytest.mark.parametrize(
    ("field", "value"),
    [("token_fault", "wrong_everything"), ("authorize_error", 12345), ("token_error", 50105)],
)
def test_invalid_failure_settings_in_code_are_refused_at_start(field: str, value: object) -> None:
    config = make_config()
    target = config.tenants[0].clients[0] if field == "token_error" else config.tenants[0].users[0]
    setattr(target, field, value)
    with pytest.raises(ValueError, match=field):
        create_devidp_app(config, "http://127.0.0.1:9000")


def test_a_client_needs_a_secret_or_a_certificate() -> None:
    config = make_config()
    config.tenants[0].clients[0].client_secret = ""
    with pytest.raises(ValueError, match="client_secret or a certificate_pem"):
        create_devidp_app(config, "http://127.0.0.1:9000")


async def test_sign_in_page_marks_test_accounts(start: Starter) -> None:
    config = make_config()
    alex = config.tenants[0].users[1]
    alex.token_fault, alex.authorize_error, alex.groups_overage = "expired", 53003, True
    async with start(config) as idp:
        page = await idp.sign_in_page(idp.authorize_params(Pkce.new()))
    assert page.count("Test account:") == 1
    assert "Test account: broken ID token (expired), refused with AADSTS53003, group overage" in page

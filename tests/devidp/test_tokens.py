"""Token claims and redirect-URI matching as pure functions, without a network."""

from __future__ import annotations

import pytest

from devidp.model import redirect_uri_matches
from devidp.tokens import SignIn, granted_scopes, id_token_claims, pairwise_subject
from tests.devidp.harness import ADELE_OID, CONTOSO_CLIENT, CONTOSO_ID, FABRIKAM_CLIENT, make_config

NOW = 1_714_567_890.75


def adele_sign_in(scopes: tuple[str, ...] = ("openid", "profile")) -> SignIn:
    tenant = make_config().tenants[0]
    return SignIn("http://idp/x/v2.0", tenant, CONTOSO_CLIENT, tenant.users[0], scopes, "sid-1")


def test_id_token_claims_are_computed_from_now() -> None:
    claims = id_token_claims(adele_sign_in(), NOW, nonce="n-1")
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (1_714_567_890, 1_714_567_890, 1_714_571_490)
    assert claims["iss"] == "http://idp/x/v2.0" and claims["aud"] == CONTOSO_CLIENT
    assert claims["nonce"] == "n-1" and claims["sid"] == "sid-1" and claims["ver"] == "2.0"
    assert claims["tid"] == CONTOSO_ID and claims["oid"] == ADELE_OID


def test_nonce_and_empty_optional_claims_are_omitted() -> None:
    sign_in = adele_sign_in()
    sign_in.user.roles.clear()
    sign_in.user.email = None
    claims = id_token_claims(sign_in, NOW, nonce=None)
    assert "nonce" not in claims and "roles" not in claims and "email" not in claims
    assert claims["groups"]  # still present: only empty or None values are dropped


def test_random_claims_differ_per_token() -> None:
    first, second = (id_token_claims(adele_sign_in(), NOW, None) for _ in range(2))
    assert first["uti"] != second["uti"] and first["rh"] != second["rh"]
    assert first["login_hint"] == second["login_hint"]


def test_pairwise_subject_differs_per_app_and_never_equals_oid() -> None:
    contoso = pairwise_subject(CONTOSO_ID, CONTOSO_CLIENT, ADELE_OID)
    assert contoso == pairwise_subject(CONTOSO_ID, CONTOSO_CLIENT.upper(), ADELE_OID)
    assert contoso != pairwise_subject(CONTOSO_ID, FABRIKAM_CLIENT, ADELE_OID)
    assert contoso != ADELE_OID and len(contoso) == 43


def test_granted_scopes_drop_offline_access_and_add_graph() -> None:
    assert granted_scopes(("openid", "offline_access", "profile")) == (
        "openid",
        "profile",
        "https://graph.microsoft.com/User.Read",
    )


@pytest.mark.parametrize(
    ("registered", "requested", "matches"),
    [
        ("https://app.example/cb", "https://app.example/cb", True),
        ("https://app.example/cb", "https://app.example/CB", False),
        ("https://app.example/cb", "https://app.example:8443/cb", False),
        ("https://app.example/cb", "https://app.example/cb?x=1", False),
        ("http://localhost:8080/cb", "http://localhost:5555/cb", True),
        ("http://localhost:8080/cb", "http://localhost/cb", True),
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:1/cb", True),
        ("http://localhost:8080/cb", "http://127.0.0.1:8080/cb", False),
        ("http://localhost:8080/cb", "http://localhost:5555/Cb", False),
        ("http://localhost:8080/cb", "https://localhost:8080/cb", False),
        ("http://localhost:8080/cb", "http://user@localhost:8080/cb", False),
        ("http://localhost:8080/cb", "http://localhost:99999999/cb", False),
        ("http://app.example:8080/cb", "http://app.example:8081/cb", False),
    ],
)
def test_redirect_uri_matching(registered: str, requested: str, matches: bool) -> None:
    assert redirect_uri_matches(registered, requested) is matches

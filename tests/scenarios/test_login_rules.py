"""Issue 3's login rules end to end: each failure the dev IdP can produce is refused with a clear page.

Every test drives the real dev IdP over loopback; faults are switched on per user or per client, the way
a misconfigured tenant or an attacker would produce them.
"""

from __future__ import annotations

import dataclasses
import html
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from devidp import DevIdpConfig
from tests.support.certs import ClientCertificate
from tests.support.html import forms
from tests.support.stack import (
    ADELE,
    ALEX,
    CONTOSO_TID,
    FABRIKAM_TID,
    MEGAN,
    Stack,
    devidp_config,
    running_stack,
)

TOKEN_FAULTS = [
    "wrong_aud",
    "wrong_iss",
    "other_tid",
    "expired",
    "not_yet_valid",
    "bad_signature",
    "unknown_kid",
    "alg_none",
    "hs256_public_key",
    "missing_oid",
    "nonce_mismatch",
    "far_future_exp",
    "infinite_exp",
    "extra_aud_no_azp",
    "foreign_azp",
]


@pytest.fixture
async def memory_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack("memory", tmp_path, {}) as s:
        yield s


async def update_user(stack: Stack, oid: str, **changes: Any) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stack.idp_url}/_devidp/users/{oid}", json=changes) as r,
    ):
        assert r.status == 200, await r.text()


async def idp_stats(stack: Stack) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{stack.idp_url}/_devidp/stats") as r:
        stats: dict[str, Any] = await r.json()
        return stats


def with_contoso_client(**changes: Any) -> DevIdpConfig:
    """The test directory with Contoso's app registration changed."""
    config = devidp_config()
    tenant = config.tenants[0]
    tenant.clients = [dataclasses.replace(tenant.clients[0], **changes)]
    return config


async def callback_page(stack: Stack, browser: aiohttp.ClientSession, username: str) -> tuple[int, str]:
    page = await stack.start_login(browser, "contoso")
    form = await stack.pick_user(browser, page, username)
    resp = await stack.post_callback(browser, form)
    return resp.status, html.unescape(await resp.text())


async def assert_signed_out(stack: Stack, browser: aiohttp.ClientSession) -> None:
    status, _ = await stack.whoami(browser, "/")
    assert status == 401


@pytest.mark.parametrize("fault", TOKEN_FAULTS)
async def test_every_broken_id_token_is_refused(memory_stack: Stack, fault: str) -> None:
    await update_user(memory_stack, ADELE.oid, token_fault=fault)
    async with memory_stack.browser() as browser:
        status, page_text = await callback_page(memory_stack, browser, ADELE.username)
        assert status == 400 and "Sign-in could not be verified" in page_text and "Traceback" not in page_text
        await assert_signed_out(memory_stack, browser)


@pytest.mark.parametrize(
    ("code", "title"),
    [
        (50105, "You don't have access yet"),
        (65001, "Permission needed"),
        (53003, "Access blocked by your organisation"),
        (50076, "Extra verification needed"),
    ],
)
async def test_authorize_errors_are_explained(memory_stack: Stack, code: int, title: str) -> None:
    await update_user(memory_stack, ADELE.oid, authorize_error=code)
    async with memory_stack.browser() as browser:
        status, page_text = await callback_page(memory_stack, browser, ADELE.username)
        assert status == 400 and title in page_text and f"AADSTS{code}" in page_text
        assert "/.auth/login/contoso" in page_text  # "try again" at the same company
        assert "Correlation ID" in page_text
        await assert_signed_out(memory_stack, browser)


@pytest.mark.parametrize(
    ("code", "admin_hint"), [(7000215, "value"), (65001, "admin consent"), (53003, "Conditional Access")]
)
async def test_token_endpoint_errors_are_explained(tmp_path: Path, code: int, admin_hint: str) -> None:
    async with running_stack(
        "memory", tmp_path, {}, idp_config=with_contoso_client(token_error=code)
    ) as stack:
        async with stack.browser() as browser:
            status, page_text = await callback_page(stack, browser, ADELE.username)
            assert status == 400 and f"AADSTS{code}" in page_text and admin_hint in page_text
            await assert_signed_out(stack, browser)


@asynccontextmanager
async def certificate_stack(tmp_path: Path, *, registered_elsewhere: bool) -> AsyncIterator[Stack]:
    """Contoso authenticates with a certificate; the dev IdP has that one registered, or another one."""
    cert = ClientCertificate.generate()
    (tmp_path / "key.pem").write_bytes(cert.key_pem)
    (tmp_path / "cert.pem").write_bytes(cert.certificate_pem)
    registered = ClientCertificate.generate() if registered_elsewhere else cert
    idp = with_contoso_client(client_secret="", certificate_pem=registered.pem)
    contoso = {"client_secret": None, "certificate": {"key_file": "key.pem", "cert_file": "cert.pem"}}
    async with running_stack("memory", tmp_path, {}, idp_config=idp, contoso=contoso) as stack:
        yield stack


async def test_certificate_credential_signs_in(tmp_path: Path) -> None:
    async with certificate_stack(tmp_path, registered_elsewhere=False) as stack, stack.browser() as browser:
        assert await stack.login(browser, "contoso", ADELE.username) == "/"


async def test_wrong_certificate_is_explained(tmp_path: Path) -> None:
    async with certificate_stack(tmp_path, registered_elsewhere=True) as stack, stack.browser() as browser:
        status, page_text = await callback_page(stack, browser, ADELE.username)
        assert status == 400 and "AADSTS700027" in page_text and "certificate" in page_text


async def test_client_secret_basic_signs_in(tmp_path: Path) -> None:
    async with running_stack("memory", tmp_path, {}, contoso={"client_secret_method": "basic"}) as stack:
        async with stack.browser() as browser:
            assert await stack.login(browser, "contoso", ADELE.username) == "/"


async def test_group_overage_denied_by_default(memory_stack: Stack) -> None:
    await update_user(memory_stack, ADELE.oid, groups_overage=True)
    async with memory_stack.browser() as browser:
        status, page_text = await callback_page(memory_stack, browser, ADELE.username)
        assert status == 403 and "Too many groups" in page_text
        await assert_signed_out(memory_stack, browser)


async def test_group_overage_resolved_through_graph(tmp_path: Path) -> None:
    contoso = {"groups_overage": "graph", "graph_url": "{idp_url}/graph"}
    async with running_stack("memory", tmp_path, {}, contoso=contoso) as stack:
        await update_user(stack, ADELE.oid, groups_overage=True)
        async with stack.browser() as browser:
            assert await stack.login(browser, "contoso", ADELE.username) == "/"
            async with browser.get(f"{stack.gateway_url}/.auth/me") as resp:
                assert (await resp.json())["groups"] == ADELE.groups
        assert (await idp_stats(stack))["graph"] == 1


async def test_multi_tenant_app_admits_only_allowed_tenants(tmp_path: Path) -> None:
    idp = with_contoso_client(multi_tenant=True)
    contoso = {"tenant_id": "organizations", "allowed_tenants": [CONTOSO_TID]}
    async with running_stack("memory", tmp_path, {}, idp_config=idp, contoso=contoso) as stack:
        async with stack.browser() as browser:
            assert await stack.login(browser, "contoso", ADELE.username) == "/"
            async with browser.get(f"{stack.gateway_url}/.auth/me") as resp:
                assert (await resp.json())["tid"] == CONTOSO_TID
        async with stack.browser() as browser:
            status, page_text = await callback_page(stack, browser, MEGAN.username)
            assert status == 400 and "Sign-in could not be verified" in page_text
            await assert_signed_out(stack, browser)


async def test_multi_tenant_app_with_both_tenants_allowed(tmp_path: Path) -> None:
    idp = with_contoso_client(multi_tenant=True)
    contoso = {"tenant_id": "organizations", "allowed_tenants": [CONTOSO_TID, FABRIKAM_TID]}
    async with running_stack("memory", tmp_path, {}, idp_config=idp, contoso=contoso) as stack:
        async with stack.browser() as browser:
            assert await stack.login(browser, "contoso", MEGAN.username) == "/"
            async with browser.get(f"{stack.gateway_url}/.auth/me") as resp:
                me = await resp.json()
                assert me["tid"] == FABRIKAM_TID and me["login_code"] == "contoso"


async def test_app_specific_keys(tmp_path: Path) -> None:
    idp = with_contoso_client(app_specific_keys=True)
    async with running_stack(
        "memory", tmp_path, {}, idp_config=idp, contoso={"app_specific_keys": True}
    ) as stack:
        async with stack.browser() as browser:
            assert await stack.login(browser, "contoso", ADELE.username) == "/"
    async with running_stack("memory", tmp_path, {}, idp_config=idp) as stack:
        async with stack.browser() as browser:
            # Without ?appid the gateway never sees the app's key: the token is refused, not trusted.
            status, _ = await callback_page(stack, browser, ADELE.username)
            assert status == 400


async def test_key_rotation_is_picked_up_on_unknown_kid(memory_stack: Stack) -> None:
    async with memory_stack.browser() as browser:
        await memory_stack.login(browser, "contoso", ADELE.username)
    before = (await idp_stats(memory_stack))["jwks"]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{memory_stack.idp_url}/_devidp/keys/rotate", params={"retire_old": "1"}) as r:
            assert r.status == 200
    async with memory_stack.browser() as browser:
        assert await memory_stack.login(browser, "contoso", ADELE.username) == "/"
    assert (await idp_stats(memory_stack))["jwks"] == before + 1


async def test_authorize_request_carries_config_and_allowed_hints(tmp_path: Path) -> None:
    contoso = {"prompt": "select_account", "domain_hint": "contoso.example", "scopes": ["openid", "profile"]}
    async with running_stack("memory", tmp_path, {}, contoso=contoso) as stack, stack.browser() as browser:
        start = f"{stack.gateway_url}/.auth/login/contoso/start"
        async with browser.get(
            start, params={"login_hint": "adele@contoso.example", "prompt": "evil"}, allow_redirects=False
        ) as resp:
            query = URL(resp.headers["Location"]).query
        assert query["prompt"] == "select_account" and query["domain_hint"] == "contoso.example"
        assert query["login_hint"] == "adele@contoso.example" and query["scope"] == "openid profile"
        assert query["response_mode"] == "form_post" and query["code_challenge_method"] == "S256"
        assert len(query["code_challenge"]) == 43 and query["nonce"] and query["state"]


async def test_query_response_mode(tmp_path: Path) -> None:
    async with running_stack("memory", tmp_path, {}, contoso={"response_mode": "query"}) as stack:
        async with stack.browser() as browser:
            page = await stack.start_login(browser, "contoso")
            form = next(f for f in forms(page) if f.fields.get("username") == ADELE.username)
            async with browser.post(
                str(URL(stack.idp_url).join(URL(form.action))), data=form.fields, allow_redirects=False
            ) as resp:
                callback = resp.headers["Location"]
            assert "/.auth/callback?" in callback and "code=" in callback
            async with browser.get(callback, allow_redirects=False) as resp:
                assert resp.status == 303
            status, _ = await stack.whoami(browser, "/")
            assert status == 200


async def test_state_expires_after_ten_minutes(tmp_path: Path) -> None:
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    async with running_stack("memory", tmp_path, {}, clock=clock) as stack, stack.browser() as browser:
        page = await stack.start_login(browser, "contoso")
        form = await stack.pick_user(browser, page, ADELE.username)
        offset[0] = 601
        resp = await stack.post_callback(browser, form)
        page_text = await resp.text()
        assert resp.status == 400 and "took too long" in page_text and "/.auth/login" in page_text


async def test_return_path_is_validated_end_to_end(memory_stack: Stack) -> None:
    async with memory_stack.browser() as browser:
        for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
            assert await memory_stack.login(browser, "contoso", ADELE.username, rd=evil) == "/"
        assert (
            await memory_stack.login(browser, "contoso", ADELE.username, rd="/deep/link?a=1")
            == "/deep/link?a=1"
        )


async def test_unknown_code_and_chooser_reveal_no_unlisted_company(tmp_path: Path) -> None:
    async with running_stack("memory", tmp_path, {}, contoso={"listed": True}) as stack, stack.browser() as b:
        async with b.get(f"{stack.gateway_url}/.auth/login/nope") as resp:
            page_text = await resp.text()
            assert resp.status == 404 and "Contoso Ltd" in page_text and "Fabrikam" not in page_text
        async with b.get(f"{stack.gateway_url}/.auth/login") as resp:
            page_text = await resp.text()
            assert "Contoso Ltd" in page_text and "Fabrikam" not in page_text and "fabrikam" not in page_text
        async with b.post(
            f"{stack.gateway_url}/.auth/login", data={"who": "megan@fabrikam.example"}, allow_redirects=False
        ) as resp:
            # The chooser keeps what the user typed in its field (issue 18); nothing else names the company.
            shown = (await resp.text()).replace('value="megan@fabrikam.example"', "")
            assert resp.status == 404 and "fabrikam" not in shown.lower()
        async with b.post(
            f"{stack.gateway_url}/.auth/login",
            data={"who": "Adele@Contoso.Example", "rd": "/x"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303 and URL(resp.headers["Location"]).path == "/.auth/login/contoso"
            assert URL(resp.headers["Location"]).query["rd"] == "/x"
        async with b.get(f"{stack.gateway_url}/login/contoso") as resp:
            assert resp.status == 200 and "Sign in to Contoso Ltd" in await resp.text()


async def test_auto_redirect_skips_the_company_page(tmp_path: Path) -> None:
    async with running_stack("memory", tmp_path, {}, contoso={"auto_redirect": True}) as stack:
        async with stack.browser() as browser:
            async with browser.get(
                f"{stack.gateway_url}/.auth/login/contoso?rd=/x", allow_redirects=False
            ) as resp:
                assert resp.status == 302
                start = URL(resp.headers["Location"])
                assert start.path == "/.auth/login/contoso/start" and start.query["rd"] == "/x"
            async with browser.get(
                f"{stack.gateway_url}/.auth/login/fabrikam?auto=1", allow_redirects=False
            ) as resp:
                assert (
                    resp.status == 302 and URL(resp.headers["Location"]).path == "/.auth/login/fabrikam/start"
                )
            async with browser.get(
                f"{stack.gateway_url}/.auth/login/fabrikam", allow_redirects=False
            ) as resp:
                assert resp.status == 200  # fabrikam did not opt in


async def test_company_configured_by_verified_domain(tmp_path: Path) -> None:
    """tenant_id may be a verified domain; the token's tid is still checked against the tenant's GUID."""
    async with running_stack("memory", tmp_path, {}, contoso={"tenant_id": "contoso.example"}) as stack:
        async with stack.browser() as browser:
            assert await stack.login(browser, "contoso", ADELE.username) == "/"
            async with browser.get(f"{stack.gateway_url}/.auth/me") as resp:
                assert (await resp.json())["tid"] == CONTOSO_TID
        async with stack.browser() as browser:
            status, page_text = await callback_page(stack, browser, MEGAN.username)
            assert status == 400


async def test_require_role_refuses_users_without_one(tmp_path: Path) -> None:
    roles = {"order": ["reader", "admin"], "app_roles": {"Wiki.Admin": "admin"}, "require_role": True}
    async with running_stack("memory", tmp_path, {}, contoso={"roles": roles}) as stack:
        async with stack.browser() as browser:
            status, page_text = await callback_page(stack, browser, ALEX.username)  # Alex has no app role
            assert status == 403 and "Ask your administrator to assign you a role" in page_text
            await assert_signed_out(stack, browser)
        async with stack.browser() as browser:
            assert await stack.login(browser, "contoso", ADELE.username) == "/"


async def test_login_codes_in_paths_are_case_insensitive(memory_stack: Stack) -> None:
    """Users type the code as the chooser shows it ("Contoso"): every login path accepts any case."""
    async with memory_stack.browser() as browser:
        for path in ("/.auth/login/Contoso", "/login/CONTOSO"):
            async with browser.get(f"{memory_stack.gateway_url}{path}") as resp:
                assert resp.status == 200 and "Sign in to Contoso Ltd" in await resp.text()
        async with browser.get(
            f"{memory_stack.gateway_url}/.auth/login/ConTOSO/start", allow_redirects=False
        ) as resp:
            assert resp.status == 302 and resp.headers["Location"].startswith(memory_stack.idp_url)
        assert await memory_stack.login(browser, "Contoso", ADELE.username, rd="/x") == "/x"
        async with browser.get(f"{memory_stack.gateway_url}/.auth/login/{'C' * 65}") as resp:
            assert resp.status == 404

"""Login-flow abuse end to end: codes, states, return URLs and logout, through the real dev IdP."""

from __future__ import annotations

import aiohttp
import pytest
from yarl import URL

from tests.security.conftest import Target
from tests.support.html import forms
from tests.support.stack import ADELE, ALEX, MEGAN, Stack


async def assert_anonymous(stack: Stack, browser: aiohttp.ClientSession) -> None:
    status, _ = await stack.whoami(browser, "/")
    assert status == 401


async def test_code_replayed_with_a_fresh_state_is_refused(target: Target) -> None:
    """The victim's code, already redeemed, posted by an attacker with a state of their own."""
    stack = target.stack
    async with stack.browser() as victim:
        form = await stack.pick_user(victim, await stack.start_login(victim, "contoso"), ADELE.username)
        assert (await stack.post_callback(victim, form)).status == 303
    async with stack.browser() as attacker:
        own = await stack.pick_user(attacker, await stack.start_login(attacker, "contoso"), ALEX.username)
        own.fields["code"] = form.fields["code"]
        resp = await stack.post_callback(attacker, own)
        assert resp.status == 400 and "Traceback" not in await resp.text()
        assert "Set-Cookie" not in resp.headers
        await assert_anonymous(stack, attacker)


async def test_unused_code_injected_into_another_login_is_refused(target: Target) -> None:
    """A stolen code not yet redeemed: PKCE binds it to the verifier of the login that asked for it."""
    stack = target.stack
    async with stack.browser() as victim, stack.browser() as attacker:
        stolen = await stack.pick_user(victim, await stack.start_login(victim, "contoso"), ADELE.username)
        own = await stack.pick_user(attacker, await stack.start_login(attacker, "contoso"), ALEX.username)
        own.fields["code"] = stolen.fields["code"]
        resp = await stack.post_callback(attacker, own)
        assert resp.status == 400 and "Traceback" not in await resp.text()
        await assert_anonymous(stack, attacker)


async def test_code_of_another_companys_login_is_refused(target: Target) -> None:
    """A Fabrikam code (Fabrikam's client) posted with a state of a Contoso login."""
    stack = target.stack
    async with stack.browser() as browser:
        fabrikam = await stack.pick_user(
            browser, await stack.start_login(browser, "fabrikam"), MEGAN.username
        )
        contoso = await stack.pick_user(browser, await stack.start_login(browser, "contoso"), ADELE.username)
        contoso.fields["code"] = fabrikam.fields["code"]
        resp = await stack.post_callback(browser, contoso)
        assert resp.status == 400
        await assert_anonymous(stack, browser)


@pytest.mark.parametrize("part", ["id", "key"])
async def test_tampered_state_is_refused(target: Target, part: str) -> None:
    stack = target.stack
    async with stack.browser() as browser:
        form = await stack.pick_user(browser, await stack.start_login(browser, "contoso"), ADELE.username)
        record_id, key = form.fields["state"].split(".")
        if part == "id":
            record_id = ("A" if record_id[0] != "A" else "B") + record_id[1:]
        else:
            key = ("A" if key[0] != "A" else "B") + key[1:]
        form.fields["state"] = f"{record_id}.{key}"
        resp = await stack.post_callback(browser, form)
        assert resp.status == 400 and "Please sign in again" in await resp.text()
        await assert_anonymous(stack, browser)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"code": "x"},
        {"state": ""},
        {"code": "", "state": "a.b"},
        {"error": "access_denied", "state": "x.y"},
    ],
)
async def test_callback_without_a_valid_state_is_refused_cleanly(
    target: Target, fields: dict[str, str]
) -> None:
    stack = target.stack
    async with stack.browser() as browser:
        async with browser.post(f"{stack.gateway_url}/.auth/callback", data=fields) as resp:
            text = await resp.text()
            assert resp.status == 400 and "Traceback" not in text
        await assert_anonymous(stack, browser)


EVIL_RETURNS = [
    "//evil.example/x",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "https:evil.example",
    "https:/evil.example",
    "http://evil.example/",
    "HTTPS://evil.example/",
    "/%2f%2fevil.example",
    "%2f%2fevil.example",
    "/%2F%5Cevil.example",
    "/\r\nLocation: http://evil.example/",
    "/%0d%0aLocation:%20http://evil.example/",
    "/\t/evil.example",
    " //evil.example",
    "//evil\u3002example",
    "http://evil\u3002example/",
    "\uff0f\uff0fevil.example",
    "//127.0.0.1@evil.example/",
    "http://127.0.0.1@evil.example/",
    "http://127.0.0.1:1@evil.example/",
    "http://unrouted.example/",
    "http://127.0.0.2/",
    "javascript:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
]


@pytest.mark.parametrize("rd", EVIL_RETURNS)
async def test_open_redirect_spellings_through_the_whole_login(target: Target, rd: str) -> None:
    """Each spelling, through company page -> dev IdP -> callback: the browser lands on the gateway."""
    stack = target.stack
    async with stack.browser() as browser:
        landed = await stack.login(browser, "contoso", ADELE.username, rd=rd)
    assert "\r" not in landed and "\n" not in landed
    assert landed == "/", landed


@pytest.mark.parametrize(
    "rd", ["/%252f%252fevil.example", "/\u3002evil.example", "/\uff0f\uff0fevil.example"]
)
async def test_odd_but_relative_return_paths_stay_on_the_gateway(target: Target, rd: str) -> None:
    """Double encoding and look-alike slashes in a path: kept or dropped, the browser stays on the gateway
    (a browser never decodes a Location path, and the gateway answers 400 to double encoding)."""
    stack = target.stack
    async with stack.browser() as browser:
        landed = await stack.login(browser, "contoso", ADELE.username, rd=rd)
    resolved = URL(stack.gateway_url).join(URL(landed, encoded=True))
    assert landed.startswith("/") and not landed.startswith("//")
    assert resolved.host == "127.0.0.1" and resolved.port == URL(stack.gateway_url).port


@pytest.mark.parametrize("rd", ["//evil.example/x", "https://evil.example/", "/%2f%2fevil.example"])
async def test_open_redirect_through_the_login_alias_and_the_chooser(target: Target, rd: str) -> None:
    """The alias and the chooser carry ``rd`` too; they validate it like the company page."""
    stack = target.stack
    async with stack.browser() as browser:
        async with browser.get(f"{stack.gateway_url}/login/contoso", params={"rd": rd}) as resp:
            assert resp.status == 200
            assert "evil.example" not in await resp.text()
        async with browser.post(
            f"{stack.gateway_url}/.auth/login",
            data={"who": "adele@contoso.example", "rd": rd},
            allow_redirects=False,
        ) as resp:
            assert resp.status in (302, 303)
            assert "evil.example" not in resp.headers["Location"]


async def test_protocol_relative_request_path_cannot_become_an_open_redirect(target: Target) -> None:
    """``GET //evil.example/x`` while anonymous: the kept return path stays on the gateway after login."""
    stack = target.stack
    async with stack.browser() as browser:
        url = URL(f"{stack.gateway_url}//evil.example/x", encoded=True)
        async with browser.get(url, allow_redirects=False) as resp:
            assert resp.status == 302
            rd = URL(resp.headers["Location"]).query.get("rd", "/")
        landed = await stack.login(browser, "contoso", ADELE.username, rd=rd)
        resolved = URL(stack.gateway_url).join(URL(landed))
        assert resolved.host == "127.0.0.1" and resolved.port == URL(stack.gateway_url).port


async def test_a_safe_return_url_is_kept(target: Target) -> None:
    """Control for the open-redirect cases: a plain path and an absolute URL of a routed host survive."""
    stack = target.stack
    async with stack.browser() as browser:
        assert await stack.login(browser, "contoso", ADELE.username, rd="/deep?x=1") == "/deep?x=1"
        own = f"{stack.gateway_url}/abs"
        assert await stack.login(browser, "contoso", ADELE.username, rd=own) == own


async def test_logout_with_another_sessions_csrf_token_is_refused(target: Target) -> None:
    """The CSRF token is per session: an attacker's own valid token does not sign the victim out."""
    stack = target.stack
    async with stack.browser() as victim, stack.browser() as attacker:
        await stack.login(victim, "contoso", ADELE.username)
        await stack.login(attacker, "contoso", ALEX.username)
        async with attacker.get(f"{stack.gateway_url}/.auth/logout") as resp:
            attackers_form = forms(await resp.text())[0]
        async with victim.post(f"{stack.gateway_url}/.auth/logout", data=attackers_form.fields) as resp:
            assert resp.status == 403
        assert (await stack.whoami(victim, "/"))[0] == 200


async def test_logout_csrf_token_cannot_come_from_the_query_string(target: Target) -> None:
    stack = target.stack
    async with stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        async with browser.get(f"{stack.gateway_url}/.auth/logout") as resp:
            token = forms(await resp.text())[0].fields["csrf"]
        async with browser.post(f"{stack.gateway_url}/.auth/logout", params={"csrf": token}) as resp:
            assert resp.status == 403
        assert (await stack.whoami(browser, "/"))[0] == 200


async def test_frontchannel_logout_with_a_guessed_sid_ends_nobody(target: Target) -> None:
    stack = target.stack
    async with stack.browser() as browser, aiohttp.ClientSession() as anonymous:
        await stack.login(browser, "contoso", ADELE.username)
        for sid in ("00000000-0000-0000-0000-000000000000", "*", "", "' OR 1=1"):
            async with anonymous.get(
                f"{stack.gateway_url}/.auth/frontchannel-logout", params={"sid": sid}
            ) as r:
                assert r.status < 500
        assert (await stack.whoami(browser, "/"))[0] == 200

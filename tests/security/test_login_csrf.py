"""Login CSRF (RFC 6749 10.12): a sign-in can only be completed by the browser that started it.

Entra's form_post is a cross-site POST that carries no SameSite=Lax cookie, so the gateway re-posts it
from its own origin (a same-site request that does carry the login-binding cookie) before checking it.
"""

from __future__ import annotations

import aiohttp

from tests.security.conftest import Target
from tests.support.html import forms
from tests.support.stack import ADELE


async def test_a_sign_in_started_elsewhere_is_refused(target: Target) -> None:
    stack = target.stack
    async with stack.browser() as attacker, stack.browser() as victim:
        page = await stack.start_login(attacker, "contoso")
        form = await stack.pick_user(attacker, page, ADELE.username)  # the attacker's own Entra answer
        resp = await stack.post_callback(victim, form)  # replayed into the victim's browser
        assert resp.status == 400 and "started in another browser" in await resp.text()
        assert (await stack.whoami(victim, "/"))[0] == 401  # not signed in as the attacker
        assert not any(c.key == "broker" for c in victim.cookie_jar)


async def test_cross_site_form_post_is_re_posted_same_site_and_completes(target: Target) -> None:
    stack = target.stack
    async with stack.browser() as browser:
        page = await stack.start_login(browser, "contoso")
        form = await stack.pick_user(browser, page, ADELE.username)
        binding = next(c for c in browser.cookie_jar if c.key == "broker-login")
        assert binding["httponly"] and binding["samesite"] == "Lax"
    # Entra's POST as a browser sends it cross-site: without any of the gateway's Lax cookies.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as cross_site:
        async with cross_site.post(form.action, data=form.fields, allow_redirects=False) as resp:
            assert resp.status == 200
            assert "script-src 'nonce-" in resp.headers["Content-Security-Policy"]
            bounce = next(f for f in forms(await resp.text()) if f.fields.get("bounced") == "1")
        assert bounce.action == "/.auth/callback" and bounce.fields["state"] == form.fields["state"]
        # The page's same-site re-post carries the binding cookie.
        async with cross_site.post(
            f"{stack.gateway_url}/.auth/callback",
            data=bounce.fields,
            headers={"Cookie": f"broker-login={binding.value}"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 303 and "broker=" in resp.headers.get("Set-Cookie", "")


async def test_a_re_post_without_the_binding_cookie_is_refused(target: Target) -> None:
    stack = target.stack
    async with stack.browser() as browser:
        page = await stack.start_login(browser, "contoso")
        form = await stack.pick_user(browser, page, ADELE.username)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as other:
        fields = {**form.fields, "bounced": "1"}
        async with other.post(
            f"{stack.gateway_url}/.auth/callback", data=fields, allow_redirects=False
        ) as resp:
            assert resp.status == 400 and "started in another browser" in await resp.text()

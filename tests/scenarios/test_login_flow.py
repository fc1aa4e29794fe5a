"""The walking skeleton end to end: anonymous -> company page -> dev IdP -> callback -> proxied -> logout.

Runs against the memory store and a real Redis (``store_url`` is parametrised in conftest).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import jwt
from yarl import URL

from tests.support.html import forms
from tests.support.stack import ADELE, CONTOSO_TID, MEGAN, Stack


async def verify_with_gateway_jwks(stack: Stack, assertion: str, audience: str) -> dict[str, Any]:
    """Verify an assertion the way a backend would: keys from /.auth/jwks.json, iss, aud, exp."""
    async with aiohttp.ClientSession() as http, http.get(f"{stack.gateway_url}/.auth/jwks.json") as resp:
        jwks = jwt.PyJWKSet.from_dict(await resp.json())
    kid = jwt.get_unverified_header(assertion)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    claims: dict[str, Any] = jwt.decode(
        assertion, key.key, algorithms=["ES256"], audience=audience, issuer=stack.gateway_url
    )
    return claims


async def test_full_login_proxy_and_logout(stack: Stack) -> None:
    async with stack.browser() as browser:
        # Anonymous browser -> 302 to the route's company login, keeping the return path.
        async with browser.get(f"{stack.gateway_url}/docs?page=2", allow_redirects=False) as resp:
            assert resp.status == 302
            location = URL(resp.headers["Location"])
            assert location.path == "/.auth/login/contoso" and location.query["rd"] == "/docs?page=2"
        # API client -> 401 JSON, not a redirect.
        status, body = await stack.whoami(browser, "/docs")
        assert status == 401 and body["error"] == "login_required"

        # Company page shows the company's name and note; the dev IdP shows its sign-in page.
        async with browser.get(f"{stack.gateway_url}/.auth/login/contoso") as page:
            html = await page.text()
            assert "Contoso Ltd" in html and "Use your Contoso work account." in html
            assert "Sign in with Microsoft" in html

        landed = await stack.login(browser, "contoso", ADELE.username, rd="/docs?page=2")
        assert landed == "/docs?page=2"

        # The proxied request reaches the backend with a valid assertion for this user.
        status, body = await stack.whoami(browser, "/docs?page=2")
        assert status == 200
        assert body["path"] == "/docs" and body["query"] == "page=2"
        assertion = body["headers"]["X-Broker-Assertion"]
        assertion = assertion[0] if isinstance(assertion, list) else assertion
        claims = await verify_with_gateway_jwks(stack, assertion, "https://127.0.0.1")
        assert claims["tid"] == CONTOSO_TID and claims["oid"] == ADELE.oid
        assert claims["sub"] == f"{CONTOSO_TID}:{ADELE.oid}"
        assert (
            claims["login_code"] == "contoso" and claims["roles"] == ["admin"] and claims["role"] == "admin"
        )
        assert claims["exp"] - claims["iat"] <= 300 and claims["jti"]
        assert body["assertion"]["valid"] is True  # the backend verified it too
        # The gateway's own cookie never reaches the upstream.
        assert "broker=" not in str(body["headers"].get("Cookie", ""))
        assert body["headers"]["X-Remote-User"] == ADELE.username

        # /.auth/me shows the identity, without tokens.
        async with browser.get(f"{stack.gateway_url}/.auth/me") as resp:
            me = await resp.json()
            assert me["sub"] == f"{CONTOSO_TID}:{ADELE.oid}" and "id_token" not in me

        # Logout: GET only asks; POST with the CSRF token signs out.
        async with browser.get(f"{stack.gateway_url}/.auth/logout") as resp:
            confirm = forms(await resp.text())[0]
        status, _ = await stack.whoami(browser, "/")
        assert status == 200, "GET /.auth/logout must not sign out"
        async with browser.post(f"{stack.gateway_url}/.auth/logout", data=confirm.fields) as resp:
            assert resp.status == 200
            assert "Also sign out of your Microsoft account" in await resp.text()
        status, body = await stack.whoami(browser, "/")
        assert status == 401


async def test_logout_post_without_csrf_token_is_refused(stack: Stack) -> None:
    async with stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        async with browser.post(f"{stack.gateway_url}/.auth/logout", data={"csrf": "forged"}) as resp:
            assert resp.status == 403
        status, _ = await stack.whoami(browser, "/")
        assert status == 200


async def test_user_of_another_company_cannot_finish_login(stack: Stack) -> None:
    """A Fabrikam user picking their account at Contoso's login gets an explained error, no session."""
    async with stack.browser() as browser:
        page = await stack.start_login(browser, "contoso")
        form = await stack.pick_user(browser, page, MEGAN.username)
        resp = await stack.post_callback(browser, form)
        html = await resp.text()
        assert resp.status == 400
        assert "AADSTS50020" in html and "Wrong account for this company" in html
        assert "Traceback" not in html
        status, _ = await stack.whoami(browser, "/")
        assert status == 401


async def test_session_of_one_company_is_refused_on_another_companys_route(stack: Stack) -> None:
    async with stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        status, body = await stack.whoami(browser, "/fabrikam/x")
        assert status == 403 and body["login_code"] == "contoso"


async def test_callback_refuses_replayed_and_unknown_state(stack: Stack) -> None:
    async with stack.browser() as browser:
        page = await stack.start_login(browser, "contoso")
        form = await stack.pick_user(browser, page, ADELE.username)
        first = await stack.post_callback(browser, form)
        assert first.status == 303

    async with stack.browser() as attacker:
        replay = await stack.post_callback(attacker, form)
        html = await replay.text()
        assert replay.status == 400 and "Please sign in again" in html and "Traceback" not in html
        assert "Set-Cookie" not in replay.headers

        form.fields["state"] = "x" * 24 + "." + "y" * 43
        unknown = await stack.post_callback(attacker, form)
        assert unknown.status == 400 and "Please sign in again" in await unknown.text()

        async with attacker.get(f"{stack.gateway_url}/.auth/callback?code=abc") as resp:
            assert resp.status == 400 and "Please sign in again" in await resp.text()

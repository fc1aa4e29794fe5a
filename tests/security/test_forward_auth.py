"""Forward-auth end to end: Debian's nginx (``auth_request``) and caddy (``forward_auth``) in front of the
demo backend, asking the broker's ``/.auth/verify``; and the verify endpoint's own defences.

Each ingress runs the config ``docs/forward-auth.md`` gives (``tests/security/ingress.py``): anonymous
browser -> login -> back -> identity reaches the backend; policy 403; API client 401; spoofed identity
headers never reach the backend; logout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from tests.security.ingress import nginx_writable_dir, running_caddy, running_nginx, verify_cache
from tests.support.html import forms
from tests.support.stack import ADELE, Stack, running_stack

TRUSTED_LOOPBACK = {"trusted_proxies": ["127.0.0.1/32"]}
AUTH_ONLY = {"host": "127.0.0.1", "path": "/ingress-only/", "allow": {"login_codes": ["contoso"]}}
SPOOFED = {"X-Broker-Assertion": "forged.jwt.value", "X-Remote-User": "mallory@contoso.example"}


@pytest.fixture
async def trusted_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """The whole product with the ingress (loopback) trusted to call verify, and an auth-only route."""
    async with running_stack(
        "memory", tmp_path, {}, server=TRUSTED_LOOPBACK, routes_extra=[AUTH_ONLY]
    ) as stack:
        yield stack


def first(value: str | list[str]) -> str:
    """One header value as the backend reported it (a repeated header is a list)."""
    return value[0] if isinstance(value, list) else value


async def sign_out(stack: Stack, browser: aiohttp.ClientSession) -> None:
    """Confirm and post the logout form, through the ingress (``stack.gateway_url``)."""
    async with browser.get(f"{stack.gateway_url}/.auth/logout") as resp:
        confirm = forms(await resp.text())[0]
    async with browser.post(f"{stack.gateway_url}/.auth/logout", data=confirm.fields) as resp:
        assert resp.status == 200


async def api_status(browser: aiohttp.ClientSession, url: str) -> int:
    """The status an API client gets (an ingress may answer 401 with its own HTML page)."""
    async with browser.get(url, headers={"Accept": "application/json"}, allow_redirects=False) as resp:
        return resp.status


async def walk_through(stack: Stack, ingress_url: str) -> None:
    """The scenario every ingress must pass, with ``ingress_url`` in front of the stack's backend."""
    via = dataclasses.replace(stack, gateway_url=ingress_url)
    async with via.browser() as browser:
        # Anonymous browser: sent to the route's company login, on the ingress's own host.
        async with browser.get(f"{ingress_url}/docs?page=2", allow_redirects=False) as resp:
            assert resp.status == 302, await resp.text()
            location = URL(resp.headers["Location"])
            assert str(location.origin()) == ingress_url
            assert location.path == "/.auth/login/contoso" and location.query["rd"] == "/docs?page=2"
        # API client: 401, never a redirect.
        assert await api_status(browser, f"{ingress_url}/docs") == 401
        landed = await via.login(browser, "contoso", ADELE.username, rd="/docs?page=2")
        assert landed.endswith("/docs?page=2")
        # The identity reaches the backend; the client's spoofed copies never do.
        status, body = await via.whoami(browser, "/docs?page=2", **SPOOFED)
        assert status == 200, body
        assert body["path"] == "/docs" and body["query"] == "page=2"
        assert body["assertion"]["valid"] is True, body["assertion"]
        assert first(body["headers"]["X-Broker-Assertion"]) != SPOOFED["X-Broker-Assertion"]
        assert body["headers"]["X-Remote-User"] == ADELE.username
        assert "mallory" not in str(body["headers"])
        # Policy: Adele (contoso) may not use the fabrikam route.
        assert await api_status(browser, f"{ingress_url}/fabrikam/x") == 403
        await sign_out(via, browser)
        assert await api_status(browser, f"{ingress_url}/docs") == 401


@pytest.mark.parametrize(
    "ingress",
    [pytest.param(running_nginx, id="nginx"), pytest.param(running_caddy, id="caddy")],
)
async def test_ingress_forward_auth_end_to_end(
    trusted_stack: Stack,
    tmp_path: Path,
    ingress: Callable[[Path, str, str], AbstractContextManager[str]],
) -> None:
    with ingress(tmp_path / "ingress", trusted_stack.gateway_url, trusted_stack.backend_url) as url:
        await walk_through(trusted_stack, url)


async def signed_in_cookie(stack: Stack, browser: aiohttp.ClientSession) -> None:
    """Sign Adele in on the broker directly."""
    await stack.login(browser, "contoso", ADELE.username)


async def ask_verify(
    browser: aiohttp.ClientSession, stack: Stack, headers: dict[str, str], suffix: str = ""
) -> aiohttp.ClientResponse:
    """One verify call as an ingress makes it (the browser's cookie rides along)."""
    resp = await browser.get(
        f"{stack.gateway_url}/.auth/verify{suffix}",
        headers={"Accept": "application/json", **headers},
        allow_redirects=False,
    )
    await resp.read()
    return resp


async def test_verify_refuses_a_caller_not_in_trusted_proxies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # R1: a client reaching verify directly cannot describe a request it is not making, even signed in.
    caplog.set_level(logging.INFO, "broker.audit")
    server = {"trusted_proxies": ["10.0.0.0/8"]}
    async with running_stack("memory", tmp_path, {}, server=server) as stack, stack.browser() as browser:
        await signed_in_cookie(stack, browser)
        for headers in (
            {"X-Original-URL": f"{stack.gateway_url}/docs"},
            {"X-Forwarded-Uri": "/docs", "X-Forwarded-Host": "127.0.0.1", "X-Forwarded-Proto": "http"},
        ):
            resp = await ask_verify(browser, stack, headers)
            assert resp.status == 400
            assert "X-Broker-Assertion" not in resp.headers
    assert any(getattr(r, "event", "") == "forward_auth_refused" for r in caplog.records)


async def test_verify_answers(trusted_stack: Stack) -> None:
    # R2: 200 only with the identity of the original route; 403 for policy, unrouted hosts and ambiguous
    # paths; 400 when the ingress describes nothing usable.
    stack = trusted_stack
    async with stack.browser() as browser:
        resp = await ask_verify(browser, stack, {"X-Original-URL": f"{stack.gateway_url}/docs"})
        assert resp.status == 401 and "X-Broker-Login" not in resp.headers  # API client: no login URL
        await signed_in_cookie(stack, browser)
        resp = await ask_verify(browser, stack, {"X-Original-URL": f"{stack.gateway_url}/docs"})
        assert resp.status == 200 and resp.headers["X-Remote-User"] == ADELE.username
        assert resp.headers["Cache-Control"] == "no-store"
        # Envoy ext_authz: the original path after the verify prefix.
        resp = await ask_verify(browser, stack, {}, suffix="/docs")
        assert resp.status == 200 and "X-Broker-Assertion" in resp.headers
        for url in (
            f"{stack.gateway_url}/fabrikam/x",
            "http://elsewhere.example/",
            f"{stack.gateway_url}/%2e%2e/x",
        ):
            resp = await ask_verify(browser, stack, {"X-Original-URL": url})
            assert resp.status == 403, url
            assert "X-Broker-Assertion" not in resp.headers
        for bad in ("ftp://127.0.0.1/x", "http://127.0.0.1//evil", "http://a b/"):
            resp = await ask_verify(browser, stack, {"X-Original-URL": bad})
            assert resp.status == 400, bad
        resp = await ask_verify(browser, stack, {"X-Forwarded-Uri": "/" + "a" * 9000})
        assert resp.status == 400
        # An auth-only route: answered for the ingress, never proxied by the broker itself.
        resp = await ask_verify(browser, stack, {"X-Original-URL": f"{stack.gateway_url}/ingress-only/a"})
        assert resp.status == 200 and "X-Broker-Assertion" in resp.headers
        status, _ = await stack.whoami(browser, "/ingress-only/a")
        assert status == 404
        # A public path: allowed, and no identity sent even for a signed-in user.
        resp = await ask_verify(browser, stack, {"X-Original-URL": f"{stack.gateway_url}/public/x"})
        assert resp.status == 200 and "X-Broker-Assertion" not in resp.headers


# The opt-in nginx cache of verify answers (docs/forward-auth.md): its TTL is how late a revocation may take
# effect at the ingress. nginx counts validity in whole seconds, so an answer may live up to a second more.
VERIFY_CACHE_SECONDS = 3
NGINX_SECOND = 1.0


async def replayed_status(url: str, cookie: str) -> int:
    """The status a client replaying a copied session cookie gets (no cookie jar: the cookie is the only
    credential, as a stolen one would be)."""
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client,
        client.get(url, headers={"Accept": "application/json", "Cookie": cookie}, allow_redirects=False) as r,
    ):
        return r.status


async def test_nginx_verify_cache_ttl_bounds_revocation_delay(trusted_stack: Stack, tmp_path: Path) -> None:
    # W1: with nginx caching verify answers by session cookie, a signed-out (revoked) session keeps passing
    # the ingress for at most the cache's TTL, never longer; an unknown cookie is never served from the cache.
    stack = trusted_stack
    with (
        nginx_writable_dir() as cache_dir,
        running_nginx(
            tmp_path / "ingress",
            stack.gateway_url,
            stack.backend_url,
            verify_cache(cache_dir, "broker", VERIFY_CACHE_SECONDS),
        ) as url,
    ):
        via = dataclasses.replace(stack, gateway_url=url)
        async with via.browser() as browser:
            await via.login(browser, "contoso", ADELE.username, rd="/docs")
            jar = browser.cookie_jar.filter_cookies(URL(url))
            cookie = f"broker={jar['broker'].value}"
            assert await replayed_status(f"{url}/docs", cookie) == 200  # answered by the broker, now cached
            cached_at = time.monotonic()
            await sign_out(via, browser)
        # The broker itself refuses the revoked session at once ...
        direct = await replayed_status(f"{stack.gateway_url}/docs", cookie)
        assert direct == 401
        # ... and a cookie the cache never saw is asked about, not served from the cache.
        assert await replayed_status(f"{url}/docs", "broker=v1.unknown.ticket") == 401
        # The ingress lets it in only while its cached answer lives: the trade-off the recipe documents.
        statuses: list[tuple[float, int]] = []
        deadline = cached_at + VERIFY_CACHE_SECONDS + NGINX_SECOND + 2
        while time.monotonic() < deadline:
            status = await replayed_status(f"{url}/docs", cookie)
            statuses.append((time.monotonic() - cached_at, status))
            if status == 401:
                break
            await asyncio.sleep(0.1)
        assert statuses[0][1] == 200, statuses  # the cache is really in front: revocation is delayed
        refused_after = next((elapsed for elapsed, status in statuses if status == 401), None)
        assert refused_after is not None, f"still let in after the cache's TTL: {statuses}"
        assert refused_after <= VERIFY_CACHE_SECONDS + NGINX_SECOND + 0.5, statuses
        assert all(status == 200 for _, status in statuses[:-1]), statuses

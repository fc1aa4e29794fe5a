"""Login flow and floods (issue 12, stream C): return URLs, bounded input, login floods, logout interop,
sessions without a refresh token, and the state's life in the callback. Everything runs through the real
stack (dev IdP, gateway, backend, memory or Redis store)."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import redis.asyncio as redis
from aiohttp import web

from broker.gateway import GATEWAY
from broker.ops.metrics import METRICS
from tests.support.stack import ADELE, ALEX, CONTOSO_CLIENT, Stack, running_stack
from tests.support.traffic import OffsetClock

HOUR = 3600.0
FLOODER = "127.0.0.2"  # another loopback address: a real, different TCP peer


def state_of(location: str) -> str:
    return parse_qs(urlsplit(location).query)["state"][0]


async def started_state(stack: Stack, browser: aiohttp.ClientSession) -> str:
    """Start a Contoso sign-in (the binding cookie lands in ``browser``); the ``state`` sent to the IdP."""
    async with browser.get(f"{stack.gateway_url}/.auth/login/contoso/start", allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        return state_of(r.headers["Location"])


def gateway_app(stack: Stack) -> web.Application:
    app = stack.runners[-1].app
    assert app is not None
    return app


def logins_series(stack: Stack) -> set[str]:
    """The ``broker_logins_total`` series the metrics endpoint would list (its exact text)."""
    text = gateway_app(stack)[METRICS].exposition().decode()
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line.startswith("broker_logins_total{")}


# --- Return URLs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rd",
    [
        "https://evil.example/",  # only the "*" route names it
        "http://127.0.0.1:1337/",  # a routed host on another port
        "https://127.0.0.1:{port}/",  # a routed host on another scheme
        "http://localhost:{port}/",  # a host only the "*" route serves, on the right port
    ],
)
async def test_catch_all_route_and_other_ports_or_schemes_are_no_return_targets(
    tmp_path: Path, rd: str
) -> None:
    catch_all = [{"host": "*", "path": "/", "upstream": "{backend_url}", "auth": "public"}]
    async with running_stack("memory", tmp_path, {}, routes_extra=catch_all) as stack:
        port = stack.gateway_url.rsplit(":", 1)[1]
        async with stack.browser() as browser:
            assert await stack.login(browser, "contoso", ADELE.username, rd=rd.format(port=port)) == "/"
            # control: the origin the gateway serves is honoured through the same whole login
            served = f"{stack.gateway_url}/open/x"
            assert await stack.login(browser, "contoso", ADELE.username, rd=served) == served


# --- Bounded input and metric labels -----------------------------------------------------------------


async def test_long_aadsts_codes_give_no_500_and_no_new_metric_series(tmp_path: Path) -> None:
    async with running_stack("memory", tmp_path, {}) as stack, stack.browser() as browser:

        async def entra_error(description: str) -> aiohttp.ClientResponse:
            state = await started_state(stack, browser)
            fields = {"state": state, "error": "access_denied", "error_description": description}
            resp = await browser.post(f"{stack.gateway_url}/.auth/callback", data=fields)
            await resp.read()
            return resp

        resp = await entra_error("AADSTS" + "9" * 5000 + ": made up")
        assert resp.status == 400 and "Traceback" not in await resp.text()
        resp = await entra_error("AADSTS50105: not assigned")  # an explained code keeps its own label
        assert resp.status == 400 and "AADSTS50105" in await resp.text()
        before = logins_series(stack)
        for i in range(300):
            digits = str(10_000_000 + i) if i % 2 else str(10**40 + i)
            resp = await entra_error(f"AADSTS{digits}: made up " + "x" * 2000)
            assert resp.status == 400
        after = logins_series(stack)
        assert after - before <= {'broker_logins_total{aadsts="other",company="contoso",result="idp_error"}'}
        assert all(re.search(r'aadsts="(|other|50105)"', s) for s in after), after


# --- Login floods -----------------------------------------------------------------------------------


async def test_a_flood_of_login_starts_gets_429_while_another_address_signs_in(tmp_path: Path) -> None:
    server = {"login_rate_per_second": 1, "login_rate_burst": 5}
    async with running_stack("memory", tmp_path, {}, server=server) as stack:
        flooder = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(FLOODER, 0)))
        async with flooder:
            statuses = []
            for i in range(20):
                async with flooder.get(
                    f"{stack.gateway_url}/.auth/login/contoso/start",
                    headers={"X-Forwarded-For": f"198.51.100.{i}"},  # not believed: untrusted peer
                    allow_redirects=False,
                ) as resp:
                    statuses.append(resp.status)
                    if resp.status == 429:
                        assert int(resp.headers["Retry-After"]) >= 1
                        assert (await resp.json())["error"] == "too_many_logins"
        assert statuses.count(429) >= 10 and statuses.count(302) >= 5, statuses
        async with stack.browser() as browser:  # 127.0.0.1: its own bucket
            assert await stack.login(browser, "contoso", ALEX.username) == "/"


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(tmp_path: Path) -> None:
    server = {"login_rate_per_second": 1, "login_rate_burst": 5, "trusted_proxies": ["127.0.0.1/32"]}
    async with running_stack("memory", tmp_path, {}, server=server) as stack, aiohttp.ClientSession() as lb:

        async def start(client: str) -> int:
            async with lb.get(
                f"{stack.gateway_url}/.auth/login/contoso/start",
                headers={"X-Forwarded-For": f"{client}, 127.0.0.1"},
                allow_redirects=False,
            ) as resp:
                return resp.status

        flood = [await start("203.0.113.7") for _ in range(15)]
        assert flood.count(429) >= 5, flood
        assert await start("203.0.113.8") == 302


async def test_outstanding_login_states_are_capped_oldest_first(tmp_path: Path, fresh_redis_url: str) -> None:
    async with (
        running_stack(fresh_redis_url, tmp_path, {}, sessions={"max_pending_logins": 3}) as stack,
        contextlib.AsyncExitStack() as browsers,
    ):
        oldest = await browsers.enter_async_context(stack.browser())
        oldest_form = await stack.pick_user(oldest, await stack.start_login(oldest, "contoso"), ALEX.username)
        newer = [await browsers.enter_async_context(stack.browser()) for _ in range(3)]
        pages = [await stack.start_login(b, "contoso") for b in newer]
        client = redis.Redis.from_url(fresh_redis_url)
        try:
            assert len(await client.keys("broker:st:*")) == 3
        finally:
            await client.aclose()
        resp = await stack.post_callback(oldest, oldest_form)
        assert resp.status == 400 and "Please sign in again" in await resp.text()
        form = await stack.pick_user(newer[-1], pages[-1], ADELE.username)
        assert (await stack.post_callback(newer[-1], form)).status == 303


# --- Logout interop ---------------------------------------------------------------------------------


async def test_rp_initiated_logout_names_the_client(tmp_path: Path) -> None:
    async with running_stack("memory", tmp_path, {}, contoso={"entra_logout": "always"}) as stack:
        async with stack.browser() as browser:
            await stack.login(browser, "contoso", ADELE.username)
            async with browser.get(f"{stack.gateway_url}/.auth/logout") as resp:
                csrf = (await resp.text()).split('name="csrf" value="')[1].split('"')[0]
            async with browser.post(
                f"{stack.gateway_url}/.auth/logout", data={"csrf": csrf}, allow_redirects=False
            ) as resp:
                end_session = resp.headers["Location"]
            query = parse_qs(urlsplit(end_session).query)
            assert query["client_id"] == [CONTOSO_CLIENT]
            assert query["post_logout_redirect_uri"] == [f"{stack.gateway_url}/.auth/logout/done"]
            async with browser.get(end_session, allow_redirects=False) as resp:
                assert resp.headers["Location"] == f"{stack.gateway_url}/.auth/logout/done"


# --- The state's life in the callback ---------------------------------------------------------------


async def test_a_callback_from_another_browser_does_not_spend_the_state(tmp_path: Path) -> None:
    async with running_stack("memory", tmp_path, {}) as stack:
        async with stack.browser() as victim, stack.browser() as onlooker:
            form = await stack.pick_user(victim, await stack.start_login(victim, "contoso"), ADELE.username)
            resp = await stack.post_callback(onlooker, form)
            assert resp.status == 400 and "another browser" in await resp.text()
            assert (await stack.post_callback(victim, form)).status == 303
            assert (await stack.whoami(victim, "/"))[0] == 200


async def test_callback_retried_after_an_idp_outage_completes_once(tmp_path: Path) -> None:
    async with running_stack("memory", tmp_path, {}) as stack, stack.browser() as browser:
        form = await stack.pick_user(browser, await stack.start_login(browser, "contoso"), ADELE.username)
        await stack.pause_idp()
        try:
            resp = await stack.post_callback(browser, form)
            assert resp.status == 503 and "Traceback" not in await resp.text()
        finally:
            await stack.resume_idp()
        assert (await stack.post_callback(browser, form)).status == 303
        assert (await stack.whoami(browser, "/"))[0] == 200
        gateway = gateway_app(stack)[GATEWAY].current
        assert await gateway.pending_logins.read(form.fields["state"], time.time()) is None  # consumed
        replay = await stack.post_callback(browser, form)  # refused by the state, before the IdP is asked
        assert (
            replay.status == 400
            and "took too long or this sign-in link was already used" in await replay.text()
        )


# --- Sessions without a refresh token --------------------------------------------------------------


@pytest.mark.parametrize(("mode", "after_id_token"), [("id_token", 401), ("session", 200)])
async def test_a_session_without_refresh_token_lasts_as_configured(
    tmp_path: Path, mode: str, after_id_token: int
) -> None:
    clock = OffsetClock()
    no_offline_access = {"scopes": ["openid", "profile", "email"]}
    async with (
        running_stack(
            "memory",
            tmp_path,
            {},
            clock=clock,
            contoso=no_offline_access,
            sessions={"without_refresh_token": mode, "idle_timeout": "3h", "lifetime": "24h"},
        ) as stack,
        stack.browser() as browser,
    ):
        await stack.login(browser, "contoso", ADELE.username)
        assert (await stack.whoami(browser, "/"))[0] == 200
        clock.offset += 2 * HOUR  # past the ID token (1 h), within idle_timeout
        assert (await stack.whoami(browser, "/"))[0] == after_id_token
        async with aiohttp.ClientSession() as http, http.get(f"{stack.idp_url}/_devidp/stats") as r:
            assert (await r.json())["token"]["refresh_token"] == 0  # nothing to refresh with
        if mode == "session":
            clock.offset += 4 * HOUR  # the broker session's own idle_timeout still ends it
            assert (await stack.whoami(browser, "/"))[0] == 401

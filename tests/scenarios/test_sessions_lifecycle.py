"""Issue 4 end to end: refresh across replicas, invalid_grant, transient failures, roles recomputed,
idle/absolute expiry, front-channel logout, sign-out everywhere, Entra logout modes, Redis restarts.

Time is controlled: one offset clock drives the gateways and the dev IdP, so tokens stay consistent.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis

from broker.cli.main import main as broker_cli
from broker.sessions.manager import SESSION_PREFIX, unpack_session
from broker.sessions.model import Session
from broker.sessions.redis_store import KEY_PREFIX
from broker.sessions.ticket import parse_ticket
from tests.support.servers import start_redis, start_redis_on_some_port
from tests.support.stack import ADELE, ALEX, CONTOSO_TID, Stack, running_stack

HOUR = 3600.0


class OffsetClock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def idp_stats(stack: Stack) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{stack.idp_url}/_devidp/stats") as r:
        stats: dict[str, Any] = await r.json()
        return stats


async def update_user(stack: Stack, oid: str, **changes: Any) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stack.idp_url}/_devidp/users/{oid}", json=changes) as r,
    ):
        assert r.status == 200, await r.text()


def ticket_of(browser: aiohttp.ClientSession) -> str:
    return next(c.value for c in browser.cookie_jar if c.key == "broker")


async def stored_session(stack: Stack, ticket: str) -> Session | None:
    """Decrypt the session a ticket points to, straight from Redis (as only the ticket holder can)."""
    key = parse_ticket(ticket)
    assert key is not None
    client = redis.Redis.from_url(stack.store_url)
    try:
        blob = await client.get(f"{KEY_PREFIX}{SESSION_PREFIX}{key.storage_id()}")
    finally:
        await client.aclose()
    plain = key.with_server(stack.session_keys()).open(blob) if blob else None
    return unpack_session(plain) if plain else None


@pytest.fixture
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture
async def two_replicas(fresh_redis_url: str, tmp_path: Path, clock: OffsetClock) -> AsyncIterator[Stack]:
    async with running_stack(fresh_redis_url, tmp_path, {}, clock=clock, gateways=2) as stack:
        yield stack


async def test_one_refresh_across_two_replicas_under_concurrency(
    two_replicas: Stack, clock: OffsetClock
) -> None:
    stack = two_replicas
    async with stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        ticket = ticket_of(browser)
    before = (await idp_stats(stack))["token"]["refresh_token"]
    clock.offset = 56 * 60  # inside the 5-minute refresh window of the 1-hour ID token

    async def hit(url: str) -> int:
        async with aiohttp.ClientSession(
            headers={"Accept": "application/json", "Cookie": f"broker={ticket}"}
        ) as c:
            async with c.get(f"{url}/") as resp:
                await resp.read()
                return resp.status

    statuses = await asyncio.gather(*(hit(stack.gateway_urls[i % 2]) for i in range(20)))
    assert statuses == [200] * 20
    assert (await idp_stats(stack))["token"]["refresh_token"] == before + 1
    session = await stored_session(stack, ticket)
    assert session is not None and session.id_token_expires_at > clock() + 50 * 60


async def test_refresh_stores_the_rotated_refresh_token_and_recomputes_roles(
    two_replicas: Stack, clock: OffsetClock
) -> None:
    stack = two_replicas
    async with stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        ticket = ticket_of(browser)
        first = await stored_session(stack, ticket)
        assert first is not None and first.roles == ["admin"]
        await update_user(stack, ADELE.oid, roles=[])  # the admin role is removed in Entra
        clock.offset = 56 * 60
        status, body = await stack.whoami(browser, "/")
        # (read from the plain header: the backend checks the assertion's iat against the real clock)
        assert status == 200 and body["headers"]["X-Remote-Roles"] == "reader"  # the default role
        second = await stored_session(stack, ticket)
        assert second is not None and second.refresh_token != first.refresh_token
        assert second.roles == ["reader"]


async def test_invalid_grant_ends_the_session(
    fresh_redis_url: str, tmp_path: Path, clock: OffsetClock
) -> None:
    async with running_stack(fresh_redis_url, tmp_path, {}, clock=clock) as stack, stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        await stack.stop_idp()
        await stack.start_idp()  # a new IdP state: the refresh token is unknown -> invalid_grant
        clock.offset = 56 * 60
        status, _ = await stack.whoami(browser, "/")
        assert status == 401
        async with browser.get(f"{stack.gateway_url}/", allow_redirects=False) as resp:
            assert resp.status == 302 and resp.headers["Location"].startswith("/.auth/login/contoso")


async def test_transient_refresh_failure_keeps_the_session(
    fresh_redis_url: str, tmp_path: Path, clock: OffsetClock
) -> None:
    async with running_stack(fresh_redis_url, tmp_path, {}, clock=clock) as stack, stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        ticket = ticket_of(browser)
        await stack.stop_idp()
        clock.offset = 56 * 60
        status, _ = await stack.whoami(browser, "/")
        assert status == 200
        session = await stored_session(stack, ticket)
        assert session is not None and session.refresh_failed_at > 0
        clock.offset = 2 * HOUR  # the ID token has expired, the IdP is still down: kept until the lifetime
        status, _ = await stack.whoami(browser, "/")
        assert status == 200
        clock.offset = 25 * HOUR  # past the absolute lifetime (24 h)
        status, _ = await stack.whoami(browser, "/")
        assert status == 401


async def test_idle_timeout_and_absolute_lifetime(tmp_path: Path, clock: OffsetClock) -> None:
    sessions = {"idle_timeout": "30m", "lifetime": "2h", "refresh_before": "5m"}
    async with running_stack("memory", tmp_path, {}, clock=clock, sessions=sessions) as stack:
        async with stack.browser() as browser:
            await stack.login(browser, "contoso", ADELE.username)
            clock.offset = 31 * 60
            assert (await stack.whoami(browser, "/"))[0] == 401  # idle
        clock.offset = 0
        async with stack.browser() as browser:
            await stack.login(browser, "contoso", ADELE.username)
            for minutes in range(20, 101, 20):  # active every 20 minutes, refreshed as needed
                clock.offset = minutes * 60
                assert (await stack.whoami(browser, "/"))[0] == 200, minutes
            clock.offset = 121 * 60
            assert (await stack.whoami(browser, "/"))[0] == 401  # absolute lifetime


async def test_frontchannel_logout_ends_the_sessions_of_that_entra_session(redis_stack: Stack) -> None:
    stack = redis_stack
    async with stack.browser() as first, stack.browser() as second:
        await stack.login(first, "contoso", ADELE.username)
        await stack.login(second, "contoso", ALEX.username)
        session = await stored_session(stack, ticket_of(first))
        assert session is not None and session.sid
        async with aiohttp.ClientSession() as entra:
            async with entra.get(
                f"{stack.gateway_url}/.auth/frontchannel-logout", params={"sid": session.sid}
            ) as r:
                assert r.status == 200
                assert "frame-ancestors" in r.headers["Content-Security-Policy"]
                assert stack.idp_url in r.headers["Content-Security-Policy"]
            async with entra.get(
                f"{stack.gateway_url}/.auth/frontchannel-logout/contoso", params={"sid": "nope"}
            ) as r:
                assert r.status == 200
        assert (await stack.whoami(first, "/"))[0] == 401
        assert (await stack.whoami(second, "/"))[0] == 200  # another Entra session: untouched


async def test_sessions_cli_lists_and_signs_a_user_out_everywhere(
    redis_stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = redis_stack
    for name, value in {"TEST_CONTOSO_SECRET": "x", "TEST_FABRIKAM_SECRET": "y"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TEST_SESSION_KEY", stack.env["TEST_SESSION_KEY"])
    async with stack.browser() as laptop, stack.browser() as phone, stack.browser() as colleague:
        await stack.login(laptop, "contoso", ADELE.username)
        await stack.login(phone, "contoso", ADELE.username)
        await stack.login(colleague, "contoso", ALEX.username)
        user = f"{CONTOSO_TID}:{ADELE.oid}"
        config = str(stack.config_path)
        assert (
            await asyncio.to_thread(broker_cli, ["sessions", "list", "--config", config, "--user", user]) == 0
        )
        assert "2 session(s)" in capsys.readouterr().out
        assert (
            await asyncio.to_thread(
                broker_cli, ["sessions", "list", "--config", config, "--company", "contoso"]
            )
            == 0
        )
        listing = capsys.readouterr().out
        assert "3 session(s)" in listing and ADELE.oid not in listing and ADELE.username not in listing
        assert (
            await asyncio.to_thread(broker_cli, ["sessions", "revoke", "--config", config, "--user", user])
            == 0
        )
        assert "revoked 2 session(s)" in capsys.readouterr().out
        assert (await status_once_settled(stack, laptop, "/", 401, within=1.0))[0] == 401
        assert (await status_once_settled(stack, phone, "/", 401, within=1.0))[0] == 401
        assert (await stack.whoami(colleague, "/"))[0] == 200
        colleague_id = parse_ticket(ticket_of(colleague))
        assert colleague_id is not None
        args = ["sessions", "revoke", "--config", config, colleague_id.storage_id()]
        assert await asyncio.to_thread(broker_cli, args) == 0
        assert (await status_once_settled(stack, colleague, "/", 401, within=1.0, oid=ALEX.oid))[0] == 401


@pytest.mark.parametrize(("mode", "offered"), [("offer", True), ("never", False)])
async def test_entra_logout_offer_and_never(tmp_path: Path, mode: str, offered: bool) -> None:
    async with running_stack("memory", tmp_path, {}, contoso={"entra_logout": mode}) as stack:
        async with stack.browser() as browser:
            await stack.login(browser, "contoso", ADELE.username)
            async with browser.get(f"{stack.gateway_url}/.auth/logout") as resp:
                csrf = (await resp.text()).split('name="csrf" value="')[1].split('"')[0]
            async with browser.post(f"{stack.gateway_url}/.auth/logout", data={"csrf": csrf}) as resp:
                page = await resp.text()
            assert ("Also sign out of your Microsoft account" in page) is offered
            if offered:
                assert "logout_hint=" in page and "post_logout_redirect_uri=" in page


async def test_entra_logout_always_redirects_to_microsoft(tmp_path: Path) -> None:
    async with running_stack("memory", tmp_path, {}, contoso={"entra_logout": "always"}) as stack:
        async with stack.browser() as browser:
            await stack.login(browser, "contoso", ADELE.username)
            async with browser.get(f"{stack.gateway_url}/.auth/logout") as resp:
                csrf = (await resp.text()).split('name="csrf" value="')[1].split('"')[0]
            async with browser.post(
                f"{stack.gateway_url}/.auth/logout", data={"csrf": csrf}, allow_redirects=False
            ) as resp:
                assert resp.status == 303
                assert resp.headers["Location"].startswith(
                    f"{stack.idp_url}/{CONTOSO_TID}/oauth2/v2.0/logout?"
                )
            assert (await stack.whoami(browser, "/"))[0] == 401


async def test_login_rotates_the_session_id(tmp_path: Path) -> None:
    async with running_stack("memory", tmp_path, {}) as stack, stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        first = ticket_of(browser)
        await stack.login(browser, "contoso", ADELE.username, rd="/again")
        second = ticket_of(browser)
        assert first != second
        async with aiohttp.ClientSession(
            headers={"Accept": "application/json", "Cookie": f"broker={first}"}
        ) as c:
            async with c.get(f"{stack.gateway_url}/") as resp:
                assert resp.status == 401  # the browser's previous session was replaced, not kept


async def status_once_settled(
    stack: Stack,
    browser: aiohttp.ClientSession,
    path: str,
    expected: int,
    within: float = 5.0,
    oid: str = ADELE.oid,
) -> tuple[int, dict[str, Any]]:
    """Ask until ``expected`` comes; anything else on the way must be a 200 for this browser's user.

    Other processes' caches drop a revoked session when the invalidation message arrives (milliseconds
    later, within a second): a request racing the message may still be answered, never as someone else.
    """
    deadline = time.monotonic() + within
    while True:
        status, body = await stack.whoami(browser, path)
        if status == expected or time.monotonic() > deadline:
            return status, body
        assert status == 200 and body["assertion"]["claims"]["oid"] == oid
        await asyncio.sleep(0.02)


async def test_redis_stopped_and_restarted_under_traffic(tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    assert binary is not None
    port, proc = start_redis_on_some_port(binary, tmp_path)
    try:
        async with (
            running_stack(f"redis://127.0.0.1:{port}/0", tmp_path, {}) as stack,
            stack.browser() as browser,
        ):
            await stack.login(browser, "contoso", ADELE.username)
            assert (await stack.whoami(browser, "/"))[0] == 200
            proc.terminate()
            proc.wait(timeout=10)
            # Until the gateway's invalidation subscription notices that Redis is gone (milliseconds: the
            # socket closes), the session cache may still answer, as the same user; then it stops serving.
            status, body = await status_once_settled(stack, browser, "/", 503)
            assert status == 503 and body["error"] == "session_store_unavailable"
            assert (await stack.whoami(browser, "/open/x"))[0] == 200  # public routes keep working
            proc = start_redis(binary, port, tmp_path)
            # This Redis keeps nothing on disk, so the old session is gone: a clean 401, then a new login.
            assert (await stack.whoami(browser, "/"))[0] == 401
            await stack.login(browser, "contoso", ADELE.username)
            assert (await stack.whoami(browser, "/"))[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_logout_on_one_replica_is_refused_by_the_other_at_once(two_replicas: Stack) -> None:
    stack = two_replicas
    async with stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        ticket = ticket_of(browser)
        async with browser.get(f"{stack.gateway_urls[0]}/.auth/logout") as resp:
            csrf = (await resp.text()).split('name="csrf" value="')[1].split('"')[0]
        async with browser.post(f"{stack.gateway_urls[0]}/.auth/logout", data={"csrf": csrf}) as resp:
            assert resp.status == 200
    async with aiohttp.ClientSession(
        headers={"Accept": "application/json", "Cookie": f"broker={ticket}"}
    ) as c:
        async with c.get(f"{stack.gateway_urls[1]}/") as resp:
            assert resp.status == 401


async def test_session_cookie_attributes(tmp_path: Path) -> None:
    async with running_stack("memory", tmp_path, {}) as stack, stack.browser() as browser:
        page = await stack.start_login(browser, "contoso")
        form = await stack.pick_user(browser, page, ADELE.username)
        resp = await stack.post_callback(browser, form)
        cookie = resp.cookies["broker"]
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
        assert not cookie["secure"]  # plain-http localhost only; see the https policy test
        assert cookie.value.startswith("v1.") and len(cookie.value) < 100


async def test_require_role_ends_the_session_when_the_last_role_is_removed(
    tmp_path: Path, clock: OffsetClock
) -> None:
    roles = {"order": ["reader", "admin"], "app_roles": {"Wiki.Admin": "admin"}, "require_role": True}
    async with running_stack("memory", tmp_path, {}, clock=clock, contoso={"roles": roles}) as stack:
        async with stack.browser() as browser:
            await stack.login(browser, "contoso", ADELE.username)
            await update_user(stack, ADELE.oid, roles=[])
            clock.offset = 56 * 60
            assert (await stack.whoami(browser, "/"))[0] == 401

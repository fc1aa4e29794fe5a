"""Dependencies down: a clear 503 naming the cause, no stack trace, recovery without a restart."""

from __future__ import annotations

from pathlib import Path

from broker.sessions.sealing import SealKey
from broker.sessions.ticket import format_ticket
from tests.support.stack import ADELE, Stack, running_stack


async def test_identity_provider_never_reached_then_back(tmp_path: Path) -> None:
    """No discovery cached yet and the IdP down: 503 page / JSON; once it is up, sign-in works."""
    async with running_stack("memory", tmp_path, {}, start_idp=False) as stack, stack.browser() as browser:
        async with browser.get(f"{stack.gateway_url}/.auth/login/contoso/start") as resp:
            html = await resp.text()
            assert resp.status == 503
            assert "Microsoft sign-in is unreachable" in html and "Traceback" not in html
        async with browser.get(
            f"{stack.gateway_url}/.auth/login/contoso/start", headers={"Accept": "application/json"}
        ) as resp:
            assert resp.status == 503 and (await resp.json())["error"] == "identity_provider_unavailable"
        await stack.start_idp()
        assert await stack.login(browser, "contoso", ADELE.username) == "/"


async def test_identity_provider_down_during_login(stack: Stack) -> None:
    """The IdP dies between sign-in and code redemption: a clear 503, no session; later logins work."""
    async with stack.browser() as browser:
        page = await stack.start_login(browser, "contoso")
        form = await stack.pick_user(browser, page, ADELE.username)
        await stack.stop_idp()
        resp = await stack.post_callback(browser, form)
        assert resp.status == 503 and "Microsoft sign-in is unreachable" in await resp.text()
        status, _ = await stack.whoami(browser, "/")
        assert status == 401
        await stack.start_idp()
        assert await stack.login(browser, "contoso", ADELE.username) == "/"


async def test_session_store_down_gives_503_and_public_routes_keep_working(
    tmp_path: Path, refused_port: int
) -> None:
    dead_redis = f"redis://127.0.0.1:{refused_port}/0"
    async with running_stack(dead_redis, tmp_path, {}) as stack, stack.browser() as browser:
        async with browser.get(f"{stack.gateway_url}/.auth/login/contoso/start") as resp:
            html = await resp.text()
            assert resp.status == 503 and "session store" in html and "Traceback" not in html
        status, body = await stack.whoami(browser, "/", Cookie="broker=v1.abc.def")
        assert status == 401  # a malformed ticket is refused before the store is asked
        ticket = format_ticket(SealKey.new())
        status, body = await stack.whoami(browser, "/", Cookie=f"broker={ticket}")
        assert status == 503 and body["error"] == "session_store_unavailable"
        status, body = await stack.whoami(browser, "/open/x")
        assert status == 200
        async with browser.get(f"{stack.gateway_url}/.auth/readyz") as resp:
            assert resp.status == 503

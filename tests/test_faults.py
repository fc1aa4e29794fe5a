"""Dependencies down: a clear 503 naming the cause, no stack trace, recovery without a restart."""

from __future__ import annotations

from pathlib import Path

from broker.devidp import create_devidp_app
from broker.sessions.manager import format_ticket
from broker.sessions.sealing import SealKey
from tests.support.servers import free_port, serve
from tests.support.stack import ADELE, Stack, devidp_config, running_stack


async def test_identity_provider_down_then_back(stack: Stack) -> None:
    idp_runner = stack.runners[0]
    await idp_runner.cleanup()  # the dev IdP really stops listening
    async with stack.browser() as browser:
        async with browser.get(f"{stack.gateway_url}/.auth/login/contoso/start") as resp:
            html = await resp.text()
            assert resp.status == 503
            assert "Microsoft sign-in is unreachable" in html and "Traceback" not in html
        async with browser.get(
            f"{stack.gateway_url}/.auth/login/contoso/start", headers={"Accept": "application/json"}
        ) as resp:
            assert resp.status == 503 and (await resp.json())["error"] == "identity_provider_unavailable"

        # Same port, new process state: the gateway recovers by itself.
        port = int(stack.idp_url.rsplit(":", 1)[1])
        stack.runners[0] = await serve(create_devidp_app(devidp_config(), stack.idp_url), port)
        assert await stack.login(browser, "contoso", ADELE.username) == "/"


async def test_session_store_down_gives_503_and_public_routes_keep_working(tmp_path: Path) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
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

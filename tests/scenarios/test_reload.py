"""Live config reload under traffic: good files swap in, bad files keep the last good config, a removed
company can no longer sign in and its sessions are refused, and sessions survive reloads."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from broker.ops.metrics import METRICS
from tests.support.stack import ADELE, MEGAN, Stack, running_stack


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack("memory", tmp_path, {}) as s:
        yield s


def edit_config(stack: Stack, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite the gateway's YAML the way an editor or a ConfigMap update does: a new file renamed over."""
    config = yaml.safe_load(stack.config_path.read_text())
    change(config)
    temporary = stack.config_path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump(config))
    os.replace(temporary, stack.config_path)


def write_raw(stack: Stack, text: str) -> None:
    temporary = stack.config_path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, stack.config_path)


def reloads(stack: Stack, result: str) -> float:
    app = stack.runners[-1].app
    assert app is not None
    value = app[METRICS].config_reloads.labels(result)._value.get()
    return float(value)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not reached in time")


@contextlib.asynccontextmanager
async def traffic(stack: Stack, cookie: str) -> AsyncIterator[list[int]]:
    """Keep requests flowing (public and authenticated) until the block ends; collect every status."""
    statuses: list[int] = []
    stop = asyncio.Event()

    async def loop(path: str) -> None:
        headers = {"Accept": "application/json", "Cookie": f"broker={cookie}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            while not stop.is_set():
                async with http.get(f"{stack.gateway_url}{path}") as resp:
                    await resp.read()
                    statuses.append(resp.status)

    tasks = [asyncio.create_task(loop(p)) for p in ("/open/x", "/docs", "/open/y", "/")]
    try:
        yield statuses
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def company_page(stack: Stack, code: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"{stack.gateway_url}/.auth/login/{code}") as resp:
        return resp.status, await resp.text()


async def test_good_config_swaps_in_under_traffic_and_sessions_survive(stack: Stack) -> None:
    async with stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        cookie = next(c.value for c in browser.cookie_jar if c.key == "broker")
        async with traffic(stack, cookie) as statuses:
            await asyncio.sleep(0.2)

            def change(config: dict[str, Any]) -> None:
                config["tenants"]["contoso"]["note"] = "Welcome back, reloaded."
                config["routes"].append(
                    {"host": "127.0.0.1", "path": "/new/", "upstream": stack.backend_url, "auth": "public"}
                )

            edit_config(stack, change)

            async def applied() -> bool:
                return "Welcome back, reloaded." in (await company_page(stack, "contoso"))[1]

            await eventually(applied)
            await asyncio.sleep(0.2)
        assert len(statuses) > 20 and set(statuses) == {200}, statuses
        assert (await stack.whoami(browser, "/new/page"))[0] == 200
        assert (await stack.whoami(browser, "/"))[0] == 200  # the session survived the reload
        assert reloads(stack, "ok") == 1


async def test_bad_config_keeps_the_last_good_one(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    good_text = stack.config_path.read_text()
    async with stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        cookie = next(c.value for c in browser.cookie_jar if c.key == "broker")
        async with traffic(stack, cookie) as statuses:
            write_raw(stack, good_text.replace("tenants:", "tenants:\n  broken: [unclosed", 1))

            async def refused() -> bool:
                return reloads(stack, "error") >= 1

            await eventually(refused)
            bad = yaml.safe_load(good_text)
            bad["tenants"]["contoso"]["tenant_id"] = "not-a-guid"
            write_raw(stack, yaml.safe_dump(bad))
            await eventually(lambda: asyncio.sleep(0, result=reloads(stack, "error") >= 2))
            await asyncio.sleep(0.2)
        assert set(statuses) == {200}
        assert "not valid YAML" in caplog.text
        assert "gateway.yaml:" in caplog.text and "tenants.contoso.tenant_id: must be a GUID" in caplog.text
        status, page = await company_page(stack, "contoso")
        assert status == 200 and "Use your Contoso work account." in page  # still the last good config
        assert reloads(stack, "ok") == 0
        write_raw(stack, good_text.replace("Use your Contoso work account.", "Fixed."))
        await eventually(lambda: asyncio.sleep(0, result=reloads(stack, "ok") == 1))
        assert "Fixed." in (await company_page(stack, "contoso"))[1]


async def test_removed_company_cannot_sign_in_and_its_sessions_are_refused(stack: Stack) -> None:
    async with stack.browser() as megan, stack.browser() as adele:
        await stack.login(megan, "fabrikam", MEGAN.username, rd="/fabrikam/")
        await stack.login(adele, "contoso", ADELE.username)
        assert (await stack.whoami(megan, "/fabrikam/x"))[0] == 200

        def remove_fabrikam(config: dict[str, Any]) -> None:
            del config["tenants"]["fabrikam"]
            config["routes"] = [r for r in config["routes"] if r["path"] != "/fabrikam/"]

        edit_config(stack, remove_fabrikam)
        await eventually(lambda: asyncio.sleep(0, result=reloads(stack, "ok") == 1))
        assert (await company_page(stack, "fabrikam"))[0] == 404
        async with megan.get(f"{stack.gateway_url}/.auth/me", headers={"Accept": "application/json"}) as resp:
            assert resp.status == 401  # her session is refused
        async with megan.get(
            f"{stack.gateway_url}/.auth/login/fabrikam/start", allow_redirects=False
        ) as resp:
            assert resp.status == 404
        assert (await stack.whoami(adele, "/"))[0] == 200  # other companies are untouched

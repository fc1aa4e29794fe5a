"""Readiness after a start during an identity-provider outage (issue 14, 4; issue 12, 9a).

Started while the dev IdP is down, every replica is unready; once the IdP is back, each replica turns
ready on its own within seconds (keys that failed are retried with backoff), with no sign-in needed. One
company's IdP down does not take a replica out of rotation. The anonymous answer never names a company;
the log does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import pytest

from broker.oidc.discovery import retry_delay
from tests.support.stack import ADELE, Stack, running_stack

COMPANIES = ("contoso", "fabrikam")


async def readyz(base: str) -> tuple[int, str, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/.auth/readyz") as resp:
        text = await resp.text()
        return resp.status, text, await resp.json(content_type=None)


async def wait_until_ready(stack: Stack, timeout: float) -> float:
    """Seconds until every replica answers 200, polling only readyz (no sign-in, no login start)."""
    started = time.monotonic()
    pending = set(stack.gateway_urls)
    while pending and time.monotonic() - started < timeout:
        for base in list(pending):
            if (await readyz(base))[0] == 200:
                pending.discard(base)
        await asyncio.sleep(0.1)
    assert not pending, f"still unready after {timeout:.0f} s: {pending}"
    return time.monotonic() - started


def test_retry_delays_double_from_one_second_to_a_minute_with_jitter() -> None:
    assert [retry_delay(n, lambda: 0.0) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert retry_delay(3, lambda: 1.0) == 4.0  # jitter takes off at most half
    assert retry_delay(10_000, lambda: 0.0) == 60


async def test_readiness_recovers_by_itself_after_a_start_during_an_idp_outage(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="broker.handlers.service")
    async with running_stack("memory", tmp_path, {}, start_idp=False, gateways=2) as stack:
        for base in stack.gateway_urls:
            status, text, body = await readyz(base)
            assert status == 503 and body["identity_providers"] == "none loaded"
            assert not any(code in text for code in COMPANIES), text  # anonymous: no company named
        assert any(all(code in r.getMessage() for code in COMPANIES) for r in caplog.records)  # the log does
        await asyncio.sleep(3)  # a few failed retries, so the backoff has grown past its first step
        await stack.start_idp()
        # Backoff after 3 s of outage: the next retry is at most 8 s away on each replica.
        assert await wait_until_ready(stack, timeout=15) < 15
        for base in stack.gateway_urls:
            status, _, body = await readyz(base)
            assert (status, body["identity_providers"]) == (200, "ok")
        async with stack.browser() as browser:
            await stack.login(browser, "contoso", ADELE.username)


async def test_one_companys_idp_down_keeps_the_gateway_in_rotation(tmp_path: Any) -> None:
    # Contoso's authority answers 404 for its discovery document (a broken or unreachable IdP).
    async with running_stack("memory", tmp_path, {}, contoso={"authority": "{idp_url}/nowhere"}) as stack:
        await wait_until_ready(stack, timeout=15)
        status, text, body = await readyz(stack.gateway_url)
        assert (status, body["identity_providers"]) == (200, "partial")
        assert not any(code in text for code in COMPANIES), text

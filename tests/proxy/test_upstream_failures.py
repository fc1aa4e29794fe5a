"""Upstream down, too slow, or dropping the connection mid-answer: clear pages, or a closed connection."""

from __future__ import annotations

import logging

import aiohttp
import pytest

from tests.proxy.conftest import Proxied

JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html"}


async def test_upstream_down_gives_502_with_the_request_id(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.get(proxied.url("/down/x"), headers=JSON) as resp:
            assert resp.status == 502
            body = await resp.json()
        assert body["error"] == "upstream_unreachable" and body["request_id"]
        async with client.get(proxied.url("/down/x"), headers=HTML) as resp:
            assert resp.status == 502
            page = await resp.text()
    assert "not reachable" in page and resp.headers["X-Request-Id"] in page


async def test_slow_upstream_gives_504_after_the_read_timeout(proxied: Proxied) -> None:
    # read_timeout is 0.5 s on this route; the backend would answer 200 after 1 s.
    async with aiohttp.ClientSession() as client:
        async with client.get(proxied.url("/slowapp/_demo/slow?seconds=1"), headers=HTML) as resp:
            assert resp.status == 504
            page = await resp.text()
    assert "too long" in page and resp.headers["X-Request-Id"] in page


async def test_a_fast_enough_upstream_is_not_cut_off(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.get(proxied.url("/slowapp/_demo/slow?seconds=0.1"), headers=JSON) as resp:
            assert resp.status == 200


async def test_upstream_reset_mid_answer_closes_the_client_connection(
    proxied: Proxied, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with aiohttp.ClientSession() as client:
        async with client.get(proxied.url("/up/reset")) as resp:
            assert resp.status == 200  # the status had been sent before the upstream went away
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
    gateway_records = [r for r in caplog.records if r.name.startswith(("broker", "aiohttp.server"))]
    assert any("mid-response" in r.getMessage() for r in gateway_records)
    assert not [r for r in gateway_records if r.exc_info or r.levelno >= logging.ERROR]


async def test_upstream_reset_inside_a_small_answer_gives_a_clean_502(proxied: Proxied) -> None:
    """Small answers are read whole before anything is sent: a drop mid-body is still a clear 502."""
    async with aiohttp.ClientSession() as client:
        async with client.get(proxied.url("/up/reset-small"), headers=JSON) as resp:
            assert resp.status == 502
            assert (await resp.json())["error"] == "upstream_unreachable"
        async with client.get(proxied.url("/up/fixed"), headers=JSON) as resp:
            assert resp.status == 200  # the route still works

"""WebSockets through the gateway: relayed both ways with close codes, under the same auth and policy."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import WSMsgType

from tests.proxy.conftest import Proxied
from tests.support.stack import ADELE, MEGAN


async def test_messages_and_client_close_code_are_relayed(proxied: Proxied) -> None:
    stack = proxied.stack
    async with stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        async with browser.ws_connect(
            proxied.url("/secure/ws"),
            protocols=("chat.v1", "chat.v2"),
            headers={"X-Remote-User": "spoofed@evil.example", "Origin": stack.gateway_url},
        ) as ws:
            assert ws.protocol == "chat.v2"  # the upstream's choice, passed on
            await ws.send_str("hello")
            assert await ws.receive_str(timeout=5) == "hello"
            await ws.send_bytes(b"\x00\x01binary")
            assert await ws.receive_bytes(timeout=5) == b"\x00\x01binary"
            await ws.ping()  # answered by aiohttp on the gateway's side
            await ws.close(code=4001, message=b"client says bye")
        await asyncio.wait_for(proxied.recorder.websocket_closed.wait(), 5)
    assert proxied.recorder.websocket_closes == [(4001, "")]
    handshake = proxied.recorder.last
    assert handshake.raw_path_qs == "/ws"
    assert handshake.header("X-Remote-User") == [ADELE.username]  # the client's copy was stripped
    assert len(handshake.header("X-Broker-Assertion")) == 1
    assert handshake.header("X-Forwarded-For") == ["127.0.0.1"]
    assert handshake.header("Origin") == [stack.gateway_url]
    assert not any("broker=" in c for c in handshake.header("Cookie"))


async def test_upstream_close_code_reaches_the_client(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.ws_connect(proxied.url("/up/ws")) as ws:
            await ws.send_str("close:4002")
            message = await ws.receive(timeout=5)
            assert message.type is WSMsgType.CLOSE
            assert message.data == 4002 and message.extra == "upstream says bye"
        assert ws.close_code == 4002


async def test_anonymous_upgrade_gets_401_not_a_redirect(proxied: Proxied) -> None:
    async with aiohttp.ClientSession(headers={"Accept": "text/html"}) as client:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await client.ws_connect(proxied.url("/secure/ws"))
    assert caught.value.status == 401
    assert proxied.recorder.requests == []


async def test_upgrade_denied_by_policy_gets_403(proxied: Proxied) -> None:
    stack = proxied.stack
    async with stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await browser.ws_connect(proxied.url("/fabrikam-ws/ws"))
    assert caught.value.status == 403
    assert proxied.recorder.requests == []


async def test_routes_without_websockets_refuse_upgrades(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await client.ws_connect(proxied.url("/nows/ws"))
        assert caught.value.status == 403
        async with client.get(proxied.url("/nows/echo")) as resp:
            assert resp.status == 200  # plain HTTP on the same route still works
    assert [seen.raw_path_qs for seen in proxied.recorder.requests] == ["/echo"]


async def test_upgrade_to_an_unreachable_upstream_gets_502(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await client.ws_connect(proxied.url("/down/ws"))
    assert caught.value.status == 502


async def test_upstream_refusing_the_upgrade_passes_its_status_on(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await client.ws_connect(proxied.url("/wiki/not-a-websocket"))
    assert caught.value.status == 502  # whoami answers 200 to a handshake: not a WebSocket


async def test_a_fabrikam_user_may_use_the_fabrikam_websocket(proxied: Proxied) -> None:
    stack = proxied.stack
    async with stack.browser() as browser:
        await stack.login(browser, "fabrikam", MEGAN.username)
        async with browser.ws_connect(proxied.url("/fabrikam-ws/ws")) as ws:
            await ws.send_str("hi")
            assert await ws.receive_str(timeout=5) == "hi"

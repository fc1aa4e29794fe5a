"""The HTTP/1.1 client inside the gateway: an answer it cannot relay safely is a clear 502, never relayed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from broker.proxy.http1.connection import HEAD_LIMIT
from tests.proxy.http1.conftest import Peer, Script, ScriptedUpstream, answer
from tests.support.stack import running_stack

Start = Callable[[Script], Awaitable[ScriptedUpstream]]
JSON = {"Accept": "application/json"}


def raw_route(port: int) -> dict[str, object]:
    """A public route /raw/ to the scripted upstream on ``port``."""
    return {"host": "127.0.0.1", "path": "/raw/", "upstream": f"http://127.0.0.1:{port}", "auth": "public"}


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        (
            b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * (HEAD_LIMIT + 1) + b"\r\nContent-Length: 2\r\n\r\nok",
            "upstream_invalid",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "upstream_invalid"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
            "upstream_invalid",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 4000\r\n\r\nshort", "upstream_unreachable"),
    ],
    ids=["head-too-large", "two-lengths", "unasked-upgrade", "small-body-cut"],
)
async def test_an_answer_that_cannot_be_relayed_is_a_502(
    scripted: Start, tmp_path: Path, sent: bytes, code: str
) -> None:
    async def bad(peer: Peer) -> None:
        await peer.request()
        await peer.send(sent)

    upstream = await scripted(bad)
    async with running_stack("memory", tmp_path, {}, routes_extra=[raw_route(upstream.port)]) as stack:
        async with aiohttp.ClientSession() as client:
            async with client.get(f"{stack.gateway_url}/raw/x", headers=JSON) as resp:
                assert resp.status == 502
                body = await resp.json()
    assert body["error"] == code and body["request_id"]
    assert "v" * 100 not in str(body)


async def test_head_and_1xx_through_the_gateway(scripted: Start, tmp_path: Path) -> None:
    async def serve(peer: Peer) -> None:
        while head := await peer.request():
            if head.startswith(b"HEAD"):
                await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            else:
                await peer.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + answer(b"final"))

    upstream = await scripted(serve)
    async with running_stack("memory", tmp_path, {}, routes_extra=[raw_route(upstream.port)]) as stack:
        async with aiohttp.ClientSession() as client:
            async with client.head(f"{stack.gateway_url}/raw/x") as resp:
                assert resp.status == 200 and resp.headers["Content-Length"] == "1000"
            async with client.get(f"{stack.gateway_url}/raw/x") as resp:
                assert resp.status == 200 and await resp.read() == b"final"
                assert "Link" not in resp.headers
    await asyncio.sleep(0)
    assert upstream.connections == 1

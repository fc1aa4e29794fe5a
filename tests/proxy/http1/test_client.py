"""The HTTP/1.1 client against scripted upstreams on loopback: keep-alive reuse, the keep-alive race,
HEAD, interim answers, bodies ended by close or cut short, bounded heads, requests that are never sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from broker.errors import (
    UnsendableHeader,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from broker.proxy.http1.client import Timeouts
from broker.proxy.http1.connection import HEAD_LIMIT, HEAD_LINES
from tests.proxy.http1.conftest import Peer, Script, ScriptedUpstream, answer, client, fetch

Start = Callable[[Script], Awaitable[ScriptedUpstream]]


async def keep_answering(peer: Peer) -> None:
    """Answer every request on the connection with a keep-alive 200 naming the connection."""
    while await peer.request():
        await peer.send(answer(b"conn %d" % peer.number))


async def test_a_connection_is_reused_while_both_sides_keep_it_alive(scripted: Start) -> None:
    upstream = await scripted(keep_answering)
    http = client()
    bodies = [(await fetch(http, upstream))[1] for _ in range(3)]
    assert bodies == [b"conn 1"] * 3 and upstream.connections == 1
    assert http.pool.idle_count() == 1 and http.pool.in_use == 0


async def test_connection_close_is_honoured(scripted: Start) -> None:
    async def close_each(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer(b"bye", b"Connection: close\r\n"))
        await asyncio.sleep(1)

    upstream = await scripted(close_each)
    http = client()
    assert (await fetch(http, upstream))[1] == b"bye"
    assert (await fetch(http, upstream))[1] == b"bye"
    assert upstream.connections == 2 and http.pool.idle_count() == 0


async def test_a_connection_the_upstream_closed_while_idle_is_not_used(scripted: Start) -> None:
    async def answer_then_close(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer(b"conn %d" % peer.number))  # keep-alive claimed, then closed anyway

    upstream = await scripted(answer_then_close)
    http = client()
    assert (await fetch(http, upstream))[1] == b"conn 1"
    await asyncio.wait_for(upstream.closed.wait(), 2)
    await asyncio.sleep(0.05)  # the client sees the EOF
    assert (await fetch(http, upstream))[1] == b"conn 2"


async def test_the_keep_alive_race_is_retried_once_for_a_request_without_body(scripted: Start) -> None:
    """The upstream takes the second request on a kept-alive connection and closes without answering (as
    when its idle timer fires just as the request arrives): the request goes again on a new connection."""

    async def drop_second(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer(b"conn %d" % peer.number))
        if peer.number == 1:
            await peer.request()  # read, never answered
            peer.writer.transport.abort()
            return
        while await peer.request():
            await peer.send(answer(b"conn %d" % peer.number))

    upstream = await scripted(drop_second)
    http = client()
    assert (await fetch(http, upstream))[1] == b"conn 1"
    assert (await fetch(http, upstream))[1] == b"conn 2"
    assert upstream.connections == 2


async def test_a_request_with_a_body_is_not_retried(scripted: Start) -> None:
    async def drop_second(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer())
        await peer.request()
        peer.writer.transport.abort()

    async def body() -> AsyncIterator[bytes]:
        yield b"payload"

    upstream = await scripted(drop_second)
    http = client()
    await fetch(http, upstream)
    with pytest.raises(UpstreamUnreachable):
        await fetch(http, upstream, "POST", body=body())
    assert upstream.connections == 1


async def test_head_ends_at_its_head_whatever_length_it_declares(scripted: Start) -> None:
    async def head_then_get(peer: Peer) -> None:
        assert (await peer.request()).startswith(b"HEAD ")
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        assert (await peer.request()).startswith(b"GET ")
        await peer.send(answer(b"after head"))
        await asyncio.sleep(1)

    upstream = await scripted(head_then_get)
    http = client()
    head, body = await fetch(http, upstream, "HEAD")
    assert head.status == 200 and head.content_length == 1000 and body == b""
    assert (await fetch(http, upstream))[1] == b"after head"
    assert upstream.connections == 1  # the connection was clean after the HEAD: reused


async def test_bytes_after_an_answer_put_the_connection_in_doubt(scripted: Start) -> None:
    async def extra_bytes(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer(b"ok") + b"HTTP/1.1 200 OK\r\n")  # a stray second answer
        await asyncio.sleep(1)

    upstream = await scripted(extra_bytes)
    http = client()
    assert (await fetch(http, upstream))[1] == b"ok"
    assert http.pool.idle_count() == 0  # closed, not pooled


async def test_interim_answers_are_skipped(scripted: Start) -> None:
    async def interim(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await peer.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
        await peer.send(answer(b"final", b"X-Final: yes\r\n"))
        await asyncio.sleep(1)

    upstream = await scripted(interim)
    head, body = await fetch(client(), upstream)
    assert (head.status, head.reason, body) == (200, "OK", b"final")
    assert "Link" not in head.headers and head.headers["X-Final"] == "yes"


async def test_reason_order_and_repeated_headers_are_kept(scripted: Start) -> None:
    async def cookies(peer: Peer) -> None:
        await peer.request()
        await peer.send(
            b"HTTP/1.1 201 Made It\r\nSet-Cookie: a=1\r\nX-Mid: m\r\nSet-Cookie: b=2\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        await asyncio.sleep(1)

    head, _ = await fetch(client(), await scripted(cookies))
    assert (head.status, head.reason) == (201, "Made It")
    assert list(head.headers.items())[:3] == [("Set-Cookie", "a=1"), ("X-Mid", "m"), ("Set-Cookie", "b=2")]


async def test_an_answer_without_length_is_read_until_the_upstream_closes(scripted: Start) -> None:
    async def until_close(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\n\r\nfirst part, ")
        await asyncio.sleep(0.05)
        await peer.send(b"second part")

    http = client()
    head, body = await fetch(http, await scripted(until_close))
    assert head.content_length is None and body == b"first part, second part"
    assert http.pool.idle_count() == 0


@pytest.mark.parametrize(
    "answer_bytes",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
    ],
    ids=["content-length", "chunked"],
)
async def test_a_body_cut_short_is_a_failure_mid_answer(scripted: Start, answer_bytes: bytes) -> None:
    async def cut(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer_bytes)

    with pytest.raises(UpstreamUnreachable):
        await fetch(client(), await scripted(cut))


async def test_chunked_trailers_are_dropped(scripted: Start) -> None:
    async def trailers(peer: Peer) -> None:
        await peer.request()
        await peer.send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n"
        )
        await asyncio.sleep(1)

    http = client()
    head, body = await fetch(http, await scripted(trailers))
    assert body == b"abcde" and "X-Sum" not in head.headers
    assert http.pool.idle_count() == 1


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(HEAD_LINES + 1)),
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * HEAD_LIMIT + b"\r\n",
    ],
    ids=["too-many-lines", "too-many-bytes"],
)
async def test_an_oversized_head_is_refused(scripted: Start, head: bytes) -> None:
    """Without the bound llhttp would take any head: memory would grow with what the upstream sends."""

    async def big(peer: Peer) -> None:
        await peer.request()
        for start in range(0, len(head), 4096):  # as a slow upstream would: in pieces
            await peer.send(head[start : start + 4096])
        await peer.send(b"Content-Length: 2\r\n\r\nok")
        await asyncio.sleep(1)

    with pytest.raises(UpstreamProtocolError):
        await fetch(client(), await scripted(big))


async def test_endless_trailers_are_refused(scripted: Start) -> None:
    """Trailers are counted from the read after the last body byte: bounded by one read plus the limit."""

    async def endless(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: ")
        for _ in range((HEAD_LIMIT + 256 * 1024) // 4096 + 2):
            await peer.send(b"t" * 4096)
        await asyncio.sleep(1)

    with pytest.raises(UpstreamProtocolError):
        await fetch(client(), await scripted(endless))


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Remote-User": "adele\r\nX-Injected: yes"},
        {"X-Remote-User": "adele\nX-Injected: yes"},
        {"X-Remote-User": "adele\x00"},
        {"X-Remote User": "adele"},
        {"X-Remote-User:": "adele"},
    ],
    ids=["crlf", "lf", "nul", "space-in-name", "colon-in-name"],
)
async def test_a_header_that_could_split_the_request_is_never_sent(
    scripted: Start, headers: dict[str, str]
) -> None:
    upstream = await scripted(keep_answering)
    with pytest.raises(UnsendableHeader):
        await fetch(client(), upstream, headers=headers)
    await asyncio.sleep(0.05)
    assert upstream.connections == 0  # not a byte of it left the gateway


async def test_the_pool_limit_is_honoured_and_its_wait_counts_toward_the_connect_timeout(
    scripted: Start,
) -> None:
    release = asyncio.Event()
    in_flight: list[int] = []
    most = 0

    async def slow(peer: Peer) -> None:
        nonlocal most
        while await peer.request():
            in_flight.append(peer.number)
            most = max(most, len(in_flight))
            await release.wait()
            in_flight.remove(peer.number)
            await peer.send(answer())

    upstream = await scripted(slow)
    http = client(limit=2)
    three = [asyncio.create_task(fetch(http, upstream)) for _ in range(3)]
    await asyncio.sleep(0.2)
    assert http.pool.in_use == 2 and len(in_flight) == 2
    with pytest.raises(UpstreamTimeout):  # no free slot within the connect timeout
        await fetch(http, upstream, timeouts=Timeouts(connect=0.1, read=2.0))
    release.set()
    assert [body for _, body in await asyncio.gather(*three)] == [b"ok"] * 3
    assert most == 2 and upstream.connections == 2


async def test_idle_connections_close_after_the_idle_timeout(scripted: Start) -> None:
    upstream = await scripted(keep_answering)
    http = client(idle_timeout=0.2)
    await fetch(http, upstream)
    assert http.pool.idle_count() == 1
    await asyncio.wait_for(upstream.closed.wait(), 2)  # the gateway closed it
    assert http.pool.idle_count() == 0
    await fetch(http, upstream)
    assert upstream.connections == 2


async def test_a_silent_upstream_times_out_per_read(scripted: Start) -> None:
    async def trickle(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")
        for byte in b"ab":  # each read well within the limit
            await asyncio.sleep(0.15)
            await peer.send(bytes([byte]))
        await asyncio.sleep(2)  # then silence

    with pytest.raises(UpstreamTimeout):
        await fetch(client(), await scripted(trickle), timeouts=Timeouts(connect=1.0, read=0.3))


async def test_request_bodies_are_framed(scripted: Start) -> None:
    received: list[bytes] = []

    async def read_body(peer: Peer) -> None:
        head = await peer.request()
        if b"Content-Length: 5" in head:
            received.append(await peer.reader.readexactly(5))
        else:
            received.append(await peer.reader.readuntil(b"0\r\n\r\n"))
        await peer.send(answer())
        await asyncio.sleep(1)

    async def body() -> AsyncIterator[bytes]:
        yield b"ab"
        yield b""
        yield b"cde"

    upstream = await scripted(read_body)
    await fetch(client(), upstream, "PUT", {"Content-Length": "5"}, body())
    await fetch(client(), upstream, "POST", {}, body())
    assert received == [b"abcde", b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"]

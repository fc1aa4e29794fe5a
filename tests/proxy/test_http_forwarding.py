"""HTTP through the gateway to real upstreams: bodies, Expect, HEAD, redirects, cookies, hop-by-hop headers,
forwarding headers, path mapping, Host, keep-alive pooling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from yarl import URL

from tests.proxy.conftest import LIMIT, Proxied
from tests.support.stack import running_stack

JSON = {"Accept": "application/json"}


async def chunks(count: int, size: int, started: list[bool] | None = None) -> AsyncIterator[bytes]:
    """A request body produced as it is sent (no Content-Length unless the test gives one)."""
    if started is not None:
        started.append(True)
    for _ in range(count):
        yield b"b" * size


async def test_chunked_request_body_is_streamed_upstream(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.post(proxied.url("/up/echo"), data=chunks(5, 100_000)) as resp:
            assert resp.status == 200
            body = await resp.json()
    assert body["body_bytes"] == 500_000
    seen = proxied.recorder.last
    assert seen.header("Transfer-Encoding") == ["chunked"] and seen.header("Content-Length") == []


async def test_content_length_body_keeps_its_length(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.put(proxied.url("/up/echo"), data=b"z" * 12345) as resp:
            assert (await resp.json())["body_bytes"] == 12345
    assert proxied.recorder.last.header("Content-Length") == ["12345"]


async def test_expect_continue_works_through_the_proxy(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.post(proxied.url("/up/echo"), data=b"q" * 70_000, expect100=True) as resp:
            assert resp.status == 200
            assert (await resp.json())["body_bytes"] == 70_000
    # The gateway answered the expectation itself; the upstream just gets the body.
    assert proxied.recorder.last.header("Expect") == []


async def test_401_is_answered_before_the_body_is_sent(proxied: Proxied) -> None:
    started: list[bool] = []
    async with aiohttp.ClientSession() as client:
        async with client.post(
            proxied.url("/secure/echo"),
            data=chunks(10, 1_000_000, started),
            headers={**JSON, "Content-Length": "10000000"},
            expect100=True,
        ) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "login_required"
            assert resp.headers["Connection"] == "close"
    assert started == [] and proxied.recorder.requests == []


async def test_413_for_a_declared_length_is_answered_before_the_body_is_sent(proxied: Proxied) -> None:
    started: list[bool] = []
    async with aiohttp.ClientSession() as client:
        async with client.post(
            proxied.url("/up/echo"),
            data=chunks(1, LIMIT + 1, started),
            headers={**JSON, "Content-Length": str(LIMIT + 1)},
            expect100=True,
        ) as resp:
            assert resp.status == 413
            body = await resp.json()
    assert body["error"] == "body_too_large" and body["request_id"]
    assert started == [] and proxied.recorder.requests == []


async def test_413_for_a_declared_length_without_expect_never_contacts_the_upstream(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.post(
            proxied.url("/up/echo"), data=b"x" * (LIMIT + 1), headers={"Accept": "text/html"}
        ) as resp:
            assert resp.status == 413
            assert "too large" in await resp.text()
    assert proxied.recorder.requests == []


async def test_a_chunked_body_growing_past_the_limit_is_cut_off_with_413(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.post(proxied.url("/up/echo"), data=chunks(4, 512 * 1024), headers=JSON) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"] == "body_too_large"
    await asyncio.sleep(0.1)  # let the upstream notice its request was aborted
    seen = proxied.recorder.last
    assert not seen.body_complete and seen.body_bytes <= LIMIT


async def test_past_the_limit_after_the_answer_started_the_connection_is_closed(proxied: Proxied) -> None:
    answered = asyncio.get_running_loop().create_future()

    async def upload() -> AsyncIterator[bytes]:
        yield b"b" * 1000
        await answered  # the rest only once the client holds the upstream's answer
        for _ in range(4):
            yield b"b" * 512 * 1024

    async with aiohttp.ClientSession() as client:
        async with client.post(proxied.url("/up/early"), data=upload()) as resp:
            answered.set_result(None)
            assert resp.status == 200  # the upstream answered before the limit was reached
            try:
                await resp.read()
                raise AssertionError("the truncated answer was read as complete")
            except aiohttp.ClientPayloadError:
                pass
    await asyncio.wait_for(proxied.recorder.upload_ended.wait(), 5)
    seen = proxied.recorder.last
    assert not seen.body_complete and seen.body_bytes <= LIMIT


async def test_head_keeps_content_length_and_has_no_body(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.head(proxied.url("/up/fixed")) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == "1000"
            assert await resp.read() == b""
    assert proxied.recorder.last.method == "HEAD"


async def test_upstream_redirects_pass_through_untouched(proxied: Proxied) -> None:
    targets = ["https://elsewhere.example/x%20y?a=1", "/relative/path", "http://127.0.0.1:1/backend-internal"]
    async with aiohttp.ClientSession() as client:
        for target in targets:
            async with client.get(
                proxied.url("/wiki/_demo/redirect"), params={"to": target}, allow_redirects=False
            ) as resp:
                assert resp.status == 302
                assert resp.headers["Location"] == target


async def test_statuses_pass_through(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        for code in (204, 304, 404, 418, 503):
            async with client.get(proxied.url(f"/wiki/_demo/status/{code}")) as resp:
                assert resp.status == code


async def test_every_set_cookie_is_kept(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.get(proxied.url("/wiki/_demo/cookies")) as resp:
            cookies = resp.headers.getall("Set-Cookie")
    assert len(cookies) == 2
    assert cookies[0].startswith("demo_a=alpha") and cookies[1].startswith("demo_b=beta")


async def test_hop_by_hop_request_headers_are_removed(proxied: Proxied) -> None:
    sent = {
        "Connection": "keep-alive, X-Client-Hop",
        "X-Client-Hop": "private",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic dXNlcjpwYXNz",
        "Proxy-Connection": "keep-alive",
        "X-End-To-End": "kept",
    }
    async with aiohttp.ClientSession() as client:
        async with client.get(proxied.url("/up/echo"), headers=sent) as resp:
            assert resp.status == 200
    seen = proxied.recorder.last
    for name in ("X-Client-Hop", "Keep-Alive", "TE", "Proxy-Authorization", "Proxy-Connection"):
        assert seen.header(name) == [], name
    assert "x-client-hop" not in ",".join(seen.header("Connection")).lower()
    assert seen.header("X-End-To-End") == ["kept"]


async def test_hop_by_hop_response_headers_are_removed(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.get(proxied.url("/up/hop")) as resp:
            assert await resp.text() == "hop"
            headers = resp.headers
    for name in ("X-Upstream-Hop", "Keep-Alive", "Proxy-Authenticate", "Trailer"):
        assert name not in headers, name
    assert "x-upstream-hop" not in headers.get("Connection", "").lower()
    assert headers["X-End-To-End"] == "kept"


SPOOFED = {
    "X-Forwarded-For": "203.0.113.66",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "spoofed.example",
    "Forwarded": "for=203.0.113.66;proto=https",
}


async def test_forwarding_claims_of_an_untrusted_client_are_replaced(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.get(proxied.url("/up/echo"), headers=SPOOFED) as resp:
            assert resp.status == 200
    seen = proxied.recorder.last
    host = proxied.stack.gateway_url.removeprefix("http://")
    assert seen.header("X-Forwarded-For") == ["127.0.0.1"]
    assert seen.header("X-Forwarded-Proto") == ["http"]
    assert seen.header("X-Forwarded-Host") == [host]
    assert seen.header("Forwarded") == [f'for=127.0.0.1;host="{host}";proto=http']


async def test_forwarding_claims_of_a_trusted_proxy_are_extended(tmp_path: Path) -> None:
    async with running_stack("memory", tmp_path, {}, server={"trusted_proxies": ["127.0.0.0/8"]}) as stack:
        async with aiohttp.ClientSession() as client:
            async with client.get(f"{stack.gateway_url}/open/x", headers={**SPOOFED, **JSON}) as resp:
                headers = (await resp.json())["headers"]
    host = stack.gateway_url.removeprefix("http://")
    assert headers["X-Forwarded-For"] == "203.0.113.66, 127.0.0.1"
    assert headers["X-Forwarded-Proto"] == "https"
    assert headers["X-Forwarded-Host"] == "spoofed.example"
    assert headers["Forwarded"] == f'for=203.0.113.66;proto=https, for=127.0.0.1;host="{host}";proto=http'


async def test_strip_prefix_keeps_the_encoding_of_the_rest(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        url = proxied.url("/up/a%2Fb/c%20d?x=%2F&y=a+b")
        async with client.get(URL(url, encoded=True)) as resp:
            assert (await resp.json())["raw_path_qs"] == "/a%2Fb/c%20d?x=%2F&y=a+b"


async def test_rewrite_replaces_the_prefix(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.get(proxied.url("/rw/page?q=1"), headers=JSON) as resp:
            body = await resp.json()
    assert body["path"] == "/base/page" and body["query"] == "q=1"


async def test_an_encoded_slash_in_the_prefix_is_refused(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        url = URL(proxied.url("/up%2Fecho"), encoded=True)
        async with client.get(url, headers=JSON) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"] == "unmappable_path"


async def test_host_is_the_upstreams_unless_preserved(proxied: Proxied) -> None:
    gateway_host = proxied.stack.gateway_url.removeprefix("http://")
    backend_host = proxied.stack.backend_url.removeprefix("http://")
    async with aiohttp.ClientSession() as client:
        async with client.get(proxied.url("/host/x"), headers=JSON) as resp:
            assert (await resp.json())["headers"]["Host"] == gateway_host
        async with client.get(proxied.url("/wiki/x"), headers=JSON) as resp:
            assert (await resp.json())["headers"]["Host"] == backend_host


async def test_upstream_connections_are_reused_until_idle(proxied: Proxied) -> None:
    async with aiohttp.ClientSession() as client:
        for _ in range(3):
            async with client.get(proxied.url("/up/echo")) as resp:
                await resp.read()
        await asyncio.sleep(0.6)  # the route's idle_timeout is 0.3 s
        async with client.get(proxied.url("/up/echo")) as resp:
            await resp.read()
    peers = [seen.peer for seen in proxied.recorder.requests]
    assert peers[0] == peers[1] == peers[2] != peers[3]

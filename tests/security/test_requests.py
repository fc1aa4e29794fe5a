"""Raw-HTTP abuse end to end: smuggling, Host, oversized headers, spoofed headers and path tricks.

Sent over raw sockets where aiohttp's client would normalise the attack away. Each case checks both the
answer and what the recording upstream received.
"""

from __future__ import annotations

import re

import aiohttp
import pytest
from yarl import URL

from tests.security.conftest import Target
from tests.support.stack import ADELE

SMUGGLED = b"GET /rec/smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def post(headers: bytes, body: bytes) -> bytes:
    """A POST to the public recorder route with these header lines and body, then a smuggled request."""
    return b"POST /rec/a HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n" + body + SMUGGLED


SMUGGLING = {
    "cl_then_te": post(b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
    "te_then_cl": post(b"Transfer-Encoding: chunked\r\nContent-Length: 40\r\n", b"0\r\n\r\n"),
    "duplicate_cl_different": post(b"Content-Length: 0\r\nContent-Length: 45\r\n", b""),
    "duplicate_cl_same": post(b"Content-Length: 2\r\nContent-Length: 2\r\n", b"hi"),
    "cl_list": post(b"Content-Length: 2, 2\r\n", b"hi"),
    "cl_signed": post(b"Content-Length: +2\r\n", b"hi"),
    "te_chunked_not_last": post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"),
    "te_unknown_coding": post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"),
    "te_space_before_colon": post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"),
    "te_vertical_tab": post(b"Transfer-Encoding: \x0bchunked\r\n", b"0\r\n\r\n"),
    "te_two_lines": post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", b"0\r\n\r\n"),
    "chunk_size_0x": post(b"Transfer-Encoding: chunked\r\n", b"0x2\r\nhi\r\n0\r\n\r\n"),
    "bare_lf_lines": b"GET /rec/a HTTP/1.1\nHost: 127.0.0.1\n\n" + SMUGGLED,
}


@pytest.mark.parametrize("name", list(SMUGGLING))
async def test_request_smuggling_is_refused_and_nothing_reaches_the_upstream(
    target: Target, name: str
) -> None:
    answer = await target.raw(SMUGGLING[name], timeout=2.0)
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"400"
    # One answer: the smuggled request was never read as a request (the 400's body may quote it).
    assert len(re.findall(rb"(?:^|\r\n)HTTP/1\.[01] \d{3} ", answer)) == 1
    assert target.paths_seen() == []


async def test_smuggling_control_a_clean_keep_alive_pair_gets_two_answers(target: Target) -> None:
    """Control: the same bytes with honest framing are two requests, both proxied."""
    answer = await target.raw(post(b"Content-Length: 2\r\n", b"hi"))
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert target.paths_seen() == ["/rec/a", "/rec/smuggled"]


@pytest.mark.parametrize(
    "host_lines",
    [
        b"Host: evil.example\r\n",
        b"Host: 127.0.0.1.\r\n",
        b"Host: LOCALHOST\r\n",
        b"Host: 127.000.000.001\r\n",
        b"Host: 2130706433\r\n",
        b"Host: evil.example\r\nHost: 127.0.0.1\r\n",
        b"Host: 127.0.0.1\r\nHost: evil.example\r\n",
        b"",
    ],
)
async def test_unrouted_or_ambiguous_host_is_never_proxied(target: Target, host_lines: bytes) -> None:
    answer = await target.raw(b"GET /rec/a HTTP/1.1\r\n" + host_lines + b"Connection: close\r\n\r\n")
    assert answer.split(b" ", 2)[1] in (b"400", b"404")
    assert b"Traceback" not in answer
    assert target.paths_seen() == []


@pytest.mark.parametrize(
    "target_form",
    [b"http://evil.example/rec/a", b"http://127.0.0.1/recsecure/a", b"https://127.0.0.1/rec/a", b"*"],
)
async def test_absolute_form_request_targets_are_refused(target: Target, target_form: bytes) -> None:
    """The gateway is no forward proxy: absolute-form (and asterisk-form) targets get a 400."""
    answer = await target.raw(
        b"GET " + target_form + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    assert answer.split(b" ", 2)[1] == b"400"
    assert target.paths_seen() == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /rec/a HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
        b"GET /rec/" + b"a" * 20000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /rec/a HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
        + b"\r\n",
        b"GET /rec/a HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-" + b"n" * 9000 + b": v\r\n\r\n",
    ],
    ids=["one_20k_header", "20k_request_line", "200_header_lines", "9k_header_name"],
)
async def test_oversized_requests_get_a_4xx_and_the_gateway_keeps_serving(
    target: Target, request_bytes: bytes
) -> None:
    answer = await target.raw(request_bytes)
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500 and target.paths_seen() == []
    async with aiohttp.ClientSession() as client, client.get(f"{target.stack.gateway_url}/rec/ok") as resp:
        assert resp.status == 200


async def signed_in_cookie(target: Target) -> str:
    """A Cookie header value for a freshly signed-in Adele."""
    async with target.stack.browser() as browser:
        await target.stack.login(browser, "contoso", ADELE.username)
        ticket = next(c.value for c in browser.cookie_jar if c.key == "broker")
    return f"broker={ticket}"


@pytest.mark.parametrize(
    "spoof",
    [
        b"X-Remote-User: ceo@contoso.example\r\nX-Remote-User: ceo2@contoso.example\r\n",
        b"x-remote-user: ceo@contoso.example\r\nX-REMOTE-USER: ceo2@contoso.example\r\n",
        b"X-Remote_User: ceo@contoso.example\r\nx_remote-user: ceo2@contoso.example\r\n",
        b"X-Broker-Assertion: forged\r\nx-broker-assertion: forged2\r\nX_BROKER_ASSERTION: forged3\r\n",
        b"X-Remote-User:ceo@contoso.example\r\n",
        b"X-Remote-User:    ceo@contoso.example   \r\n",
        b"X-Broker-Assertion-Extra: forged\r\nx_broker_session: forged\r\n",
    ],
    ids=[
        "duplicate_lines",
        "case_variants",
        "underscore_mixes",
        "assertion_spellings",
        "no_space",
        "padded",
        "prefix",
    ],
)
async def test_spoofed_identity_header_lines_never_reach_the_upstream(target: Target, spoof: bytes) -> None:
    """Raw header lines, so repeats and odd spellings arrive exactly as an attacker writes them."""
    cookie = await signed_in_cookie(target)
    answer = await target.raw(
        b"GET /recsecure/x HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: "
        + cookie.encode()
        + b"\r\n"
        + spoof
        + b"Connection: close\r\n\r\n"
    )
    assert answer.split(b" ", 2)[1] == b"200"
    seen = target.recorder.last
    remote_users = [v for k, v in seen.headers if k.lower().replace("_", "-") == "x-remote-user"]
    assertions = [v for k, v in seen.headers if k.lower().replace("_", "-").startswith("x-broker")]
    assert remote_users == [ADELE.username]
    assert len(assertions) == 1 and assertions[0].count(".") == 2 and "forged" not in assertions[0]
    assert all(
        name.lower().replace("_", "-") in ("x-remote-user", "x-broker-assertion")
        for name in [
            k for k, _ in seen.headers if k.lower().replace("_", "-").startswith(("x-remote", "x-broker"))
        ]
    )


@pytest.mark.parametrize(
    "malformed",
    [
        b"X-Remote-User : ceo@contoso.example\r\n",
        b"X-Broker-Assertion\t: forged\r\n",
        b"X-A: a\r\n X-Remote-User: ceo@contoso.example\r\n",
        b"X-Remote-User\x00: ceo@contoso.example\r\n",
    ],
    ids=["space_before_colon", "tab_before_colon", "obs_fold", "nul_in_name"],
)
async def test_malformed_identity_header_lines_are_a_400(target: Target, malformed: bytes) -> None:
    answer = await target.raw(b"GET /rec/a HTTP/1.1\r\nHost: 127.0.0.1\r\n" + malformed + b"\r\n")
    assert answer.split(b" ", 2)[1] == b"400"
    assert target.paths_seen() == []


@pytest.mark.parametrize(
    "header",
    [
        ("X-Original-URL", "/rec/a"),
        ("X-Rewrite-URL", "/rec/a"),
        ("X-Forwarded-Uri", "/rec/a"),
        ("X-Forwarded-Prefix", "/rec/"),
        ("X-Forwarded-Path", "/rec/a"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-For", "127.0.0.1"),
        ("X-Forwarded-Proto", "https"),
        ("Forwarded", "for=127.0.0.1;host=127.0.0.1;proto=https"),
        ("X-Real-IP", "127.0.0.1"),
        ("X-HTTP-Method-Override", "OPTIONS"),
        ("User-Agent", "GoogleHC/1.0"),
        ("User-Agent", "kube-probe/1.29"),
        ("Authorization", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJldmlsIn0."),
    ],
)
async def test_no_request_header_lets_an_anonymous_client_past_authentication(
    target: Target, header: tuple[str, str]
) -> None:
    """The oauth2-proxy bypasses (``X-Forwarded-Uri``, health-check user agents) and their relatives."""
    async with (
        aiohttp.ClientSession() as client,
        client.get(
            f"{target.stack.gateway_url}/recsecure/x",
            headers={"Accept": "application/json", header[0]: header[1]},
            allow_redirects=False,
        ) as resp,
    ):
        assert resp.status == 401
    assert target.paths_seen() == []


async def test_forwarded_host_from_an_untrusted_peer_moves_neither_routing_nor_redirects(
    target: Target,
) -> None:
    gateway = URL(target.stack.gateway_url)
    async with aiohttp.ClientSession() as client:
        headers = {"Host": "evil.example", "X-Forwarded-Host": "127.0.0.1", "Forwarded": "host=127.0.0.1"}
        async with client.get(f"{gateway}/rec/a", headers=headers, allow_redirects=False) as resp:
            assert resp.status == 404
        headers = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https", "Accept": "text/html"}
        async with client.get(f"{gateway}/recsecure/x", headers=headers, allow_redirects=False) as resp:
            assert resp.status == 302
            location = URL(resp.headers["Location"])
            assert location.host in (None, "127.0.0.1") and "evil.example" not in str(location)
    assert target.paths_seen() == []


TRAVERSALS = [
    "/rec/../recsecure/x",
    "/rec/%2e%2e/recsecure/x",
    "/rec/.%2e/recsecure/x",
    "/rec/%2e./recsecure/x",
    "/rec/%2E%2E%2Frecsecure/x",
    "/rec%2F..%2Frecsecure/x",
    "/rec/..%2frecsecure/x",
    "/rec/..;/recsecure/x",
    "/rec/.;/../recsecure/x",
    "/rec/..\\recsecure/x",
    "/rec/..%5crecsecure/x",
    "/rec/%252e%252e/recsecure/x",
    "/rec/%252e%252e%252frecsecure/x",
    "/rec/./../recsecure/x",
    "/rec/%2e/recsecure/x",
    "/rec/x/%00/../recsecure",
    "/public/..%2f..%2frecsecure/x",
    "/public/%2e%2e/%2e%2e/recsecure/x",
]


@pytest.mark.parametrize("raw", TRAVERSALS)
async def test_traversal_from_a_public_prefix_into_a_protected_one_is_a_400(target: Target, raw: str) -> None:
    async with (
        aiohttp.ClientSession() as client,
        client.get(
            URL(f"{target.stack.gateway_url}{raw}", encoded=True), headers={"Accept": "application/json"}
        ) as resp,
    ):
        assert resp.status == 400 and (await resp.json())["error"] == "ambiguous_path"
    assert target.paths_seen() == []


@pytest.mark.parametrize(
    "raw",
    [
        "/RECSECURE/x",
        "/Public/x",
        "/public",
        "/publicx/y",
        "/public;/x",
        "/recsecure",
        "/secret?/public/x",
        "/secret?x=/rec/",
        "/secret#/public/",
    ],
)
async def test_near_misses_of_public_prefixes_are_not_public(target: Target, raw: str) -> None:
    """Case, missing slash, parameters, query, fragment, encoding: none makes a protected path public."""
    async with (
        aiohttp.ClientSession() as client,
        client.get(
            URL(f"{target.stack.gateway_url}{raw}", encoded=True),
            headers={"Accept": "application/json"},
            allow_redirects=False,
        ) as resp,
    ):
        assert resp.status in (400, 401), await resp.text()
    assert target.paths_seen() == []


@pytest.mark.parametrize("raw", ["/rec/%0d%0aX-Remote-User:%20ceo", "/rec/a%0d%0a%0d%0aGET%20/rec/smuggled"])
async def test_encoded_crlf_in_the_path_never_splits_the_upstream_request(target: Target, raw: str) -> None:
    async with (
        aiohttp.ClientSession() as client,
        client.get(URL(f"{target.stack.gateway_url}{raw}", encoded=True)) as resp,
    ):
        assert resp.status in (400, 404)
    assert target.paths_seen() == []


@pytest.mark.parametrize(("raw", "seen"), [("//public/x", "//public/x"), ("/%70ublic/x", "/public/x")])
async def test_equivalent_spellings_of_a_public_path_are_public_to_gateway_and_upstream_alike(
    target: Target, raw: str, seen: str
) -> None:
    """``//public/x`` and ``/%70ublic/x`` are the public path to the gateway and to the upstream alike:
    let through anonymously, without identity, and read by the upstream as that same public path."""
    async with (
        aiohttp.ClientSession() as client,
        client.get(
            URL(f"{target.stack.gateway_url}{raw}", encoded=True), headers={"Accept": "application/json"}
        ) as r,
    ):
        body = await r.json()
        assert r.status == 200 and body["assertion"]["present"] is False and body["path"] == seen

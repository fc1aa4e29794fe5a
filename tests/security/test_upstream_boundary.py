"""What crosses the upstream boundary (issue 12, stream B): the broker's cookies in both directions,
identity headers nobody configured, and the Origin of WebSocket upgrades.

Raw sockets where the spelling of a header matters; the recording upstream says what really arrived.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest

from broker.proxy.boundary import IDENTITY_NAMES, IDENTITY_PREFIXES
from tests.security.conftest import Target, running_target
from tests.security.test_cookies import COOKIE, signed_in_ticket
from tests.support.stack import ADELE
from tests.support.upstreams import Seen

EXTRA_NAME = "X-Acme-User"
EXTRA_PREFIX = "X-Acme-Auth-"
ALLOWED_ORIGIN = "https://portal.example.com"
# Every family of cookie the broker sets on this stack (plain-http localhost: no __Host- prefix).
BROKER_COOKIES = ("broker", "broker-login")


@pytest.fixture
async def boundary(tmp_path: Path, attack_store: str) -> AsyncIterator[Target]:
    """The target stack, plus configured extra headers to strip and a Contoso WebSocket route."""
    server = {"strip_request_headers": [EXTRA_NAME, EXTRA_PREFIX + "*"]}
    ws_route = {
        "host": "127.0.0.1",
        "path": "/recws/",
        "upstream": "{recorder}",
        "strip_prefix": True,
        "allow": {"login_codes": ["contoso"]},
        "websocket_origins": [ALLOWED_ORIGIN],
    }
    async with running_target(tmp_path, server=server, routes_more=[ws_route], store=attack_store) as running:
        yield running


def folded(name: str) -> str:
    """The test's own folding (not the broker's): lower case, only [a-z0-9]."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def cookie_names_upstream(seen: Seen) -> list[str]:
    """Every cookie name the upstream could read, splitting as naively as any parser does (on ; and ,)."""
    crumbs = [c for line in seen.header("Cookie") for c in re.split(r"[;,]", line)]
    return [c.split("=", 1)[0].strip() for c in crumbs if c.strip()]


def no_broker_cookie_upstream(seen: Seen, ticket: str = "") -> bool:
    """No cookie of the broker's family, in any case or prefix, and no ticket, reached the upstream."""
    families = {re.sub(r"^__(host-|secure-)", "", n.lower()) for n in cookie_names_upstream(seen)}
    raw = " ".join(seen.header("Cookie"))
    return not families & set(BROKER_COOKIES) and (not ticket or ticket not in raw)


async def get_raw(target: Target, path: str, header_lines: str) -> bytes:
    """A GET over a raw socket with these header lines (each ending in CRLF), as an API client."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n{header_lines}"
        "Connection: close\r\n\r\n"
    )
    return await target.raw(request.encode())


# --- Cookies going up ----------------------------------------------------------------------------------


async def test_login_binding_cookie_never_reaches_the_upstream_after_a_real_login(target: Target) -> None:
    stack = target.stack
    async with stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        held = {c.key for c in browser.cookie_jar}
        assert {"broker", "broker-login"} <= held  # the browser really sends both
        browser.cookie_jar.update_cookies({"app": "kept"})
        async with browser.get(f"{stack.gateway_url}/recsecure/x") as resp:
            assert resp.status == 200
        async with browser.get(f"{stack.gateway_url}/rec/y") as resp:
            assert resp.status == 200
    for seen in target.recorder.requests:
        assert no_broker_cookie_upstream(seen), seen.header("Cookie")
        assert cookie_names_upstream(seen) == ["app"]


@pytest.mark.parametrize("path", ["/recsecure/x", "/rec/x"])
async def test_comma_joined_cookie_is_read_as_a_session_and_never_forwarded(
    target: Target, path: str
) -> None:
    """``x=1, broker=<ticket>`` (a front proxy joining HTTP/2 crumbs): read like ``;``, stripped anyway."""
    ticket = await signed_in_ticket(target.stack)
    for joined in (f"x=1, {COOKIE}={ticket}", f"x=1,{COOKIE}={ticket}, y=2"):
        answer = await get_raw(target, path, f"Cookie: {joined}\r\n")
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        seen = target.recorder.last
        assert no_broker_cookie_upstream(seen, ticket), seen.header("Cookie")
        assert "x" in cookie_names_upstream(seen)
        if path == "/recsecure/x":
            assert seen.header("X-Remote-User") == [ADELE.username]  # read as the session


async def test_a_ticket_on_a_second_cookie_line_is_read_and_never_forwarded(target: Target) -> None:
    ticket = await signed_in_ticket(target.stack)
    answer = await get_raw(target, "/recsecure/x", f"Cookie: a=1\r\nCookie: {COOKIE}={ticket}; b=2\r\n")
    assert answer.startswith(b"HTTP/1.1 200")
    seen = target.recorder.last
    assert no_broker_cookie_upstream(seen, ticket)
    assert sorted(cookie_names_upstream(seen)) == ["a", "b"]


async def test_broker_cookie_names_in_any_prefix_or_case_never_reach_the_upstream(target: Target) -> None:
    ticket = await signed_in_ticket(target.stack)
    variants = [
        f"__Secure-{COOKIE}={ticket}",
        f"__Host-{COOKIE}={ticket}",
        f"__host-{COOKIE}={ticket}",
        f"{COOKIE.upper()}={ticket}",
        f"__SECURE-Broker-Login={ticket}",
        f"broker-LOGIN={ticket}",
        f"__Host-broker-login={ticket}",
        f' {COOKIE} = "{ticket}" ',
    ]
    for variant in variants:
        await get_raw(target, "/rec/x", f"Cookie: app=1; {variant}; other=2\r\n")
        seen = target.recorder.last
        assert no_broker_cookie_upstream(seen, ticket), variant
        assert cookie_names_upstream(seen) == ["app", "other"], variant


async def test_a_ticket_hidden_in_a_quoted_value_never_reaches_the_upstream(target: Target) -> None:
    """Planted ``a="x`` and ``c=y"`` around the real cookie: a naive upstream parser would split it out."""
    ticket = await signed_in_ticket(target.stack)
    await get_raw(target, "/rec/x", f'Cookie: a="x; {COOKIE}={ticket}; c=y"; d=4\r\n')
    seen = target.recorder.last
    assert no_broker_cookie_upstream(seen, ticket), seen.header("Cookie")


async def test_two_different_tickets_under_the_broker_name_are_no_session(target: Target) -> None:
    """A planted cookie can neither shadow the real ticket nor be chosen over it: neither is believed."""
    ticket = await signed_in_ticket(target.stack)
    other = await signed_in_ticket(target.stack)
    for order in (f"{COOKIE}={ticket}; {COOKIE}={other}", f"{COOKIE}={other}; {COOKIE}={ticket}"):
        answer = await get_raw(target, "/recsecure/x", f"Cookie: {order}\r\n")
        assert answer.startswith(b"HTTP/1.1 401")
    answer = await get_raw(target, "/recsecure/x", f"Cookie: {COOKIE}={ticket}; {COOKIE}={ticket}\r\n")
    assert answer.startswith(b"HTTP/1.1 200")  # the same value twice is not ambiguous


# --- Cookies coming down --------------------------------------------------------------------------------

SET_BROKER_COOKIE = [
    "broker=v1.attacker.ticket; Path=/; HttpOnly",  # set / overwrite
    "broker=; Max-Age=0; Path=/",  # delete
    "__Host-broker=v1.attacker.ticket; Path=/; Secure",
    "__Secure-BROKER=v1.attacker.ticket; Path=/",
    "Broker-Login=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA; Path=/",
    "__Host-broker-login=x; Max-Age=0",
    " broker =v1.attacker.ticket",
    "=broker=v1.attacker.ticket; Path=/",  # nameless: the browser sends back "broker=v1.attacker.ticket"
    "app=1, broker=v1.attacker.ticket",  # folded into one line by an intermediary
]


@pytest.mark.parametrize("line", SET_BROKER_COOKIE)
async def test_upstream_set_cookie_for_a_broker_cookie_is_dropped_and_the_apps_own_kept(
    target: Target, line: str, caplog: pytest.LogCaptureFixture
) -> None:
    query = urlencode([("c", "app=1; Path=/"), ("c", line), ("c", "theme=dark; Max-Age=0")])
    caplog.set_level(logging.WARNING, "broker.proxy.forward")
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"{target.stack.gateway_url}/rec/set-cookie?{query}") as resp,
    ):
        assert resp.status == 200
        relayed = resp.headers.getall("Set-Cookie", [])
    assert relayed == ["app=1; Path=/", "theme=dark; Max-Age=0"]
    warnings = [
        r for r in caplog.records if r.getMessage().startswith("upstream tried to set a broker cookie")
    ]
    assert len(warnings) == 1 and "attacker" not in str(vars(warnings[0]))  # logged, without the value


async def test_upstream_set_cookie2_for_a_broker_cookie_is_dropped(target: Target) -> None:
    query = urlencode([("c2", 'broker="v1.attacker.ticket"; Version=1'), ("c2", 'app="1"; Version=1')])
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"{target.stack.gateway_url}/rec/set-cookie?{query}") as resp,
    ):
        assert resp.headers.getall("Set-Cookie2", []) == ['app="1"; Version=1']


async def test_a_session_survives_an_upstream_trying_to_switch_it(target: Target) -> None:
    """End to end: the victim's browser keeps its own session after the upstream's attempt."""
    stack = target.stack
    async with stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        mine = next(c.value for c in browser.cookie_jar if c.key == COOKIE)
        query = urlencode([("c", "broker=v1.attacker.ticket; Path=/"), ("c", "broker-login=x; Max-Age=0")])
        async with browser.get(f"{stack.gateway_url}/recsecure/set-cookie?{query}") as resp:
            assert resp.status == 200
        assert next(c.value for c in browser.cookie_jar if c.key == COOKIE) == mine
        assert any(c.key == "broker-login" for c in browser.cookie_jar)


# --- Identity headers nobody configured -----------------------------------------------------------------

DENIED = sorted(IDENTITY_NAMES) + sorted(p + "Sub" for p in IDENTITY_PREFIXES)
EXAMPLES = ["X_Forwarded_User", "x-forwarded-user.", "REMOTE_USER", "Oidc_Claim_sub", "OIDC-access-token"]
EXAMPLES += ["X-MS-CLIENT-PRINCIPAL-NAME", "x-ms-token-aad-id-token", "X-Amzn-Oidc-Data", "x_remote_user"]


def spellings(name: str) -> list[str]:
    """How a client might spell ``name`` so that some backend still reads it as ``name``."""
    return [
        name,
        name.upper().replace("-", "_"),
        name.lower() + ".",
        name.replace("-", "."),
        name.replace("-", "~") + "+",
    ]


async def assert_never_upstream(target: Target, path: str, names: list[str], cookie: str = "") -> Seen:
    """Send every spelling of every name on one request; none may reach the upstream."""
    lines = "".join(f"{spelled}: spoofed-{i}\r\n" for i, spelled in enumerate(names))
    cookie_line = f"Cookie: {COOKIE}={cookie}\r\n" if cookie else ""
    answer = await get_raw(target, path, lines + cookie_line)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    seen = target.recorder.last
    leaked = [k for k, v in seen.headers if v.startswith("spoofed-")]
    assert not leaked, leaked
    return seen


@pytest.mark.parametrize("protected", [False, True], ids=["public", "protected"])
async def test_deny_listed_identity_headers_never_reach_the_upstream(
    boundary: Target, protected: bool
) -> None:
    ticket = await signed_in_ticket(boundary.stack) if protected else ""
    path = "/recsecure/x" if protected else "/rec/x"
    for name in DENIED:
        await assert_never_upstream(boundary, path, spellings(name), ticket)
    seen = await assert_never_upstream(boundary, path, EXAMPLES, ticket)
    if protected:
        assert seen.header("X-Remote-User") == [ADELE.username]  # the broker's own identity header still goes


@pytest.mark.parametrize("protected", [False, True], ids=["public", "protected"])
async def test_configured_extra_headers_never_reach_the_upstream(boundary: Target, protected: bool) -> None:
    ticket = await signed_in_ticket(boundary.stack) if protected else ""
    path = "/recsecure/x" if protected else "/rec/x"
    names = spellings(EXTRA_NAME) + spellings(EXTRA_PREFIX + "Tenant") + ["X_ACME_AUTH_ROLE"]
    await assert_never_upstream(boundary, path, names, ticket)
    answer = await get_raw(boundary, path, "X-Acme-Other: kept\r\n" + (f"Cookie: {COOKIE}={ticket}\r\n"))
    assert answer.startswith(b"HTTP/1.1 200")
    assert boundary.recorder.last.header("X-Acme-Other") == ["kept"]  # only what was configured goes


# --- WebSocket Origin -----------------------------------------------------------------------------------


async def ws_status(target: Target, ticket: str, origin: str | None) -> int:
    """Open the Contoso WebSocket with the victim's cookie and this Origin; 101 when relayed."""
    headers = {"Cookie": f"{COOKIE}={ticket}"}
    if origin is not None:
        headers["Origin"] = origin
    async with aiohttp.ClientSession() as client:
        try:
            async with client.ws_connect(f"{target.stack.gateway_url}/recws/ws", headers=headers) as ws:
                await ws.send_str("ping")
                assert await ws.receive_str(timeout=5) == "ping"
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "null",
        "http://127.0.0.1.evil.example",
        "http://127.0.0.1:1",  # same host, another port: another origin
        "https://127.0.0.1:{port}",  # same host and port, another scheme
        "https://portal.example.com.evil.example",
        "http://user@127.0.0.1:{port}",
        "",
    ],
)
async def test_websocket_from_a_foreign_origin_is_refused_before_the_upstream(
    boundary: Target, origin: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "broker.audit")
    ticket = await signed_in_ticket(boundary.stack)
    assert await ws_status(boundary, ticket, origin.replace("{port}", str(boundary.port))) == 403
    assert boundary.recorder.requests == []  # nothing was opened upstream
    assert any(getattr(r, "why", "") == "websocket origin not allowed" for r in caplog.records)


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:{port}",
        "HTTP://127.0.0.1:{port}",
        ALLOWED_ORIGIN,
        "https://PORTAL.example.com:443",
        None,
    ],
    ids=["same_origin", "same_origin_upper", "allow_listed", "allow_listed_default_port", "no_origin"],
)
async def test_websocket_from_its_own_or_an_allowed_origin_is_relayed(
    boundary: Target, origin: str | None
) -> None:
    ticket = await signed_in_ticket(boundary.stack)
    spelled = origin.replace("{port}", str(boundary.port)) if origin is not None else None
    assert await ws_status(boundary, ticket, spelled) == 101
    handshake = boundary.recorder.last
    assert handshake.header("X-Broker-Assertion")
    assert no_broker_cookie_upstream(handshake, ticket)

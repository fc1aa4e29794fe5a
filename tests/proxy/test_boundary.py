"""Header filtering in both directions (pure, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from multidict import CIMultiDict, CIMultiDictProxy

from broker.config.load import load_config_text
from broker.proxy.boundary import (
    HeaderFilter,
    UpstreamBoundary,
    is_websocket_upgrade,
    response_headers,
    upstream_headers,
)
from broker.proxy.websocket import relayable_close_code
from broker.sessions.cookie import CookiePolicy
from tests.support.stack import gateway_config


def headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_request_hop_by_hop_and_connection_listed_headers_are_dropped() -> None:
    incoming = headers(
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Transfer-Encoding", "chunked"),
        ("Proxy-Authorization", "Basic eA=="),
        ("Expect", "100-continue"),
        ("Accept", "text/plain"),
    )
    out = upstream_headers(incoming, dropped=HeaderFilter.build(()), cookie=None, added={})
    assert list(out.items()) == [("Accept", "text/plain")]


def test_websocket_handshake_headers_are_made_afresh_upstream() -> None:
    incoming = headers(
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Protocol", "chat"),
        ("Origin", "https://wiki.example.com"),
    )
    assert is_websocket_upgrade(incoming)
    out = upstream_headers(incoming, dropped=HeaderFilter.build(()), cookie=None, added={}, websocket=True)
    assert list(out.items()) == [("Origin", "https://wiki.example.com")]


@pytest.mark.parametrize(
    ("pairs", "upgrade"),
    [
        ((("Upgrade", "WebSocket"), ("Connection", "keep-alive, Upgrade")), True),
        ((("Upgrade", "h2c"), ("Connection", "Upgrade")), False),
        ((("Upgrade", "websocket"),), False),  # Upgrade without Connection: upgrade is not a handshake
    ],
)
def test_websocket_upgrade_detection(pairs: tuple[tuple[str, str], ...], upgrade: bool) -> None:
    assert is_websocket_upgrade(headers(*pairs)) is upgrade


def test_response_hop_by_hop_dropped_and_every_set_cookie_kept() -> None:
    incoming = headers(
        ("Connection", "X-Private"),
        ("X-Private", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Authenticate", "Basic"),
        ("Set-Cookie", "a=1; Path=/"),
        ("Set-Cookie", "b=2; Path=/; HttpOnly"),
        ("Location", "http://elsewhere.example/x"),
    )
    out, refused = response_headers(incoming, frozenset({"broker", "broker-login"}))
    assert refused == []
    assert out.getall("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/; HttpOnly"]
    assert out["Location"] == "http://elsewhere.example/x"
    assert set(out) == {"Set-Cookie", "Location"}


@pytest.mark.parametrize(
    ("received", "sent"),
    [(1000, 1000), (1001, 1001), (1008, 1008), (4001, 4001), (3000, 3000), (None, 1000), (0, 1000)]
    + [(1005, 1000), (1006, 1011), (1015, 1011), (2000, 1011)],
)
def test_close_codes_are_relayed_when_they_may_be_sent(received: int | None, sent: int) -> None:
    assert relayable_close_code(received) == sent


def test_the_boundary_built_from_the_config_owns_both_directions(tmp_path: Path) -> None:
    raw = gateway_config(8080, "http://127.0.0.1:1", "http://127.0.0.1:2", "memory", tmp_path / "key.pem")
    raw["signing"]["assertion_header"] = "X-Acme-Assertion"
    raw["routes"][0]["headers"] = {"X-Wiki-Login": "preferred_username"}
    raw["server"]["strip_request_headers"] = ["X-Legacy-*"]
    environ = {"TEST_CONTOSO_SECRET": "x", "TEST_FABRIKAM_SECRET": "x"}
    config = load_config_text(yaml.safe_dump(raw), environ=environ, file_exists=lambda _path: True)
    cookies = CookiePolicy.for_public_url(config.sessions.cookie_name, config.server.public_url)
    boundary = UpstreamBoundary.from_config(config, cookies)
    broker_cookie = sorted(cookies.families)[0]
    sent = boundary.request_headers(
        headers(
            ("x_acme_assertion", "forged"),  # the configured assertion header, in another spelling
            ("X-Wiki-Login", "forged"),  # a route's identity header
            ("X-Legacy-User", "forged"),  # a configured prefix
            ("Cookie", f"{broker_cookie}=ticket; app=1"),
            ("Accept", "text/html"),
        ),
        {"X-Wiki-Login": "adele"},
    )
    assert sorted(sent.items()) == [("Accept", "text/html"), ("Cookie", "app=1"), ("X-Wiki-Login", "adele")]
    answer, refused = boundary.response_headers(
        headers(("Set-Cookie", f"{broker_cookie}=evil; Path=/"), ("Set-Cookie", "app=2"))
    )
    assert answer.getall("Set-Cookie") == ["app=2"]
    assert refused == [broker_cookie]

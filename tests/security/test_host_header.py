"""The Host header is validated, and only its validated spelling goes upstream (issues 12 and 13, stream A).

Raw sockets: aiohttp's client would refuse to send most of these values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest

from broker.config.schema import RouteConfig
from broker.grammar.host import parse_host
from broker.proxy.routing import RouteTable
from tests.security.conftest import RECORDER_URL, Target, running_target
from tests.security.test_requests import signed_in_cookie

BAD_HOSTS = [
    b"localhost:@evil.example",
    b"127.0.0.1:@evil.example",
    b"user@127.0.0.1",
    b"127.0.0.1 evil.example",
    b"127.0.0.1:0",
    b"127.0.0.1:65536",
    b"127.0.0.1:",
    b"127.0.0.1:80:80",
    b"127.0.0.1:8o",
    b"[::1",
    b"[::1]x",
    b"[fe80::1%25eth0]",
    b"[v1.fe80]",
    b"ex%61mple",
    b"127.0.0.1/evil",
    b"a,b",
]


@pytest.fixture
async def named(tmp_path: Path, attack_store: str) -> AsyncIterator[Target]:
    """Plus ``gw.example`` routes to the recorder: ``/pub/`` public and ``/app/`` Contoso-only."""
    contoso_only = {"login_codes": ["contoso"]}
    routes = [
        {"host": "gw.example", "path": "/pub/", "upstream": RECORDER_URL, "auth": "public"},
        {"host": "gw.example", "path": "/app/", "upstream": RECORDER_URL, "allow": contoso_only},
    ]
    async with running_target(tmp_path, routes_more=routes, store=attack_store) as target:
        yield target


@pytest.mark.parametrize("host", BAD_HOSTS, ids=[h.decode() for h in BAD_HOSTS])
async def test_a_host_that_is_not_host_port_is_a_400(target: Target, host: bytes) -> None:
    answer = await target.raw(b"GET /rec/a HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
    assert answer.split(b" ", 2)[1] == b"400" and b'"bad_host"' in answer, answer[:300]
    assert target.paths_seen() == []


async def test_the_upstream_receives_the_validated_normalised_host(named: Target) -> None:
    answer = await named.raw(
        b"GET /pub/x HTTP/1.1\r\nHost: GW.Example:%d\r\nX-Forwarded-Host: evil.example\r\n"
        b"Connection: close\r\n\r\n" % named.port
    )
    assert answer.split(b" ", 2)[1] == b"200"
    seen = named.recorder.last
    assert seen.header("X-Forwarded-Host") == [f"gw.example:{named.port}"]
    assert f'host="gw.example:{named.port}"' in seen.header("Forwarded")[0]


async def test_the_audience_comes_from_the_route_host_not_the_host_header(named: Target) -> None:
    """``Host: GW.EXAMPLE`` reaches the ``gw.example`` route; the assertion's aud is https://gw.example/app."""
    cookie = await signed_in_cookie(named)
    answer = await named.raw(
        b"GET /app/x HTTP/1.1\r\nHost: GW.EXAMPLE:%d\r\nCookie: %s\r\nAccept: application/json\r\n"
        b"Connection: close\r\n\r\n" % (named.port, cookie.encode())
    )
    assert answer.split(b" ", 2)[1] == b"200"
    assertion = named.recorder.last.header("X-Broker-Assertion")[0]
    assert jwt.decode(assertion, options={"verify_signature": False})["aud"] == "https://gw.example/app"


def test_ipv6_literal_routes_get_distinct_audiences() -> None:
    table = RouteTable(
        [
            RouteConfig(host="[::1]", upstream="http://u", path="/app"),
            RouteConfig(host="[0:0:0:0:0:0:0:2]", upstream="http://v", path="/app"),
            RouteConfig(host="*", upstream="http://w", path="/"),
        ]
    )
    one, two = table.match("[::1]:8443", "/app"), table.match("[::2]", "/app/x")
    assert one is not None and two is not None and one is not two
    assert one.audience("[::1]:8443") == "https://[::1]/app"
    assert two.audience("[::2]") == "https://[::2]/app"
    anywhere = table.match("WIKI.Example.COM:443", "/x")
    assert anywhere is not None and anywhere.audience("WIKI.Example.COM:443") == "https://wiki.example.com"


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("Wiki.Example.com", "wiki.example.com"),
        ("wiki.example.com:08443", "wiki.example.com:8443"),
        ("[0:0::1]:80", "[::1]:80"),
        ("127.0.0.1", "127.0.0.1"),
        ("intranet_host", "intranet_host"),
    ],
)
def test_valid_hosts_have_one_spelling(value: str, normalised: str) -> None:
    parsed = parse_host(value)
    assert parsed is not None and str(parsed) == normalised

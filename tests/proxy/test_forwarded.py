"""X-Forwarded-* and Forwarded: believed only from trusted proxies (pure decision, no network)."""

from __future__ import annotations

import pytest

from broker.proxy.forwarded import Hop, forwarded_headers, is_trusted, parse_networks

TRUSTED = parse_networks(["10.0.0.0/8", "2001:db8::/32"])
CLAIMS = {
    "x-forwarded-for": ["203.0.113.7, 198.51.100.2"],
    "x-forwarded-proto": ["https"],
    "x-forwarded-host": ["wiki.example.com"],
    "forwarded": ['for=203.0.113.7;proto=https;host="wiki.example.com"'],
}


def test_untrusted_peer_claims_are_replaced_entirely() -> None:
    headers = forwarded_headers(Hop("192.0.2.10", "gw.example.com:8080", "https"), CLAIMS, TRUSTED)
    assert headers == {
        "X-Forwarded-For": "192.0.2.10",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "gw.example.com:8080",
        "Forwarded": 'for=192.0.2.10;host="gw.example.com:8080";proto=https',
    }


def test_trusted_peer_chain_is_kept_and_the_peer_appended() -> None:
    headers = forwarded_headers(Hop("10.1.2.3", "internal:8080", "http"), CLAIMS, TRUSTED)
    assert headers["X-Forwarded-For"] == "203.0.113.7, 198.51.100.2, 10.1.2.3"
    assert headers["X-Forwarded-Proto"] == "https"
    assert headers["X-Forwarded-Host"] == "wiki.example.com"
    assert headers["Forwarded"] == (
        'for=203.0.113.7;proto=https;host="wiki.example.com", for=10.1.2.3;host="internal:8080";proto=http'
    )


def test_trusted_peer_without_claims_is_described_by_what_the_broker_saw() -> None:
    headers = forwarded_headers(Hop("10.1.2.3", "gw", "https"), {}, TRUSTED)
    assert headers == {
        "X-Forwarded-For": "10.1.2.3",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "gw",
        "Forwarded": 'for=10.1.2.3;host="gw";proto=https',
    }


def test_repeated_header_lines_join_as_one_list() -> None:
    claims = {"x-forwarded-for": ["203.0.113.7", " 198.51.100.2 "], "x-forwarded-proto": ["HTTPS, http"]}
    headers = forwarded_headers(Hop("10.0.0.1", "gw", "http"), claims, TRUSTED)
    assert headers["X-Forwarded-For"] == "203.0.113.7, 198.51.100.2, 10.0.0.1"
    assert headers["X-Forwarded-Proto"] == "https"  # the hop nearest the client, normalised


def test_a_nonsense_proto_from_a_trusted_peer_falls_back_to_the_brokers() -> None:
    headers = forwarded_headers(Hop("10.0.0.1", "gw", "https"), {"x-forwarded-proto": ["gopher"]}, TRUSTED)
    assert headers["X-Forwarded-Proto"] == "https"


def test_ipv6_peers_are_bracketed_and_quoted_in_forwarded() -> None:
    headers = forwarded_headers(Hop("2001:db8::1", "gw", "https"), {}, ())
    assert headers["X-Forwarded-For"] == "2001:db8::1"
    assert headers["Forwarded"].startswith('for="[2001:db8::1]";')


def test_quotes_in_the_host_cannot_break_out_of_forwarded() -> None:
    """An invalid Host (the middleware answers 400 before this) is never forwarded, quoted or not."""
    headers = forwarded_headers(Hop("192.0.2.1", 'evil";for=1.2.3.4', "https"), {}, ())
    assert headers["Forwarded"] == "for=192.0.2.1;proto=https"
    assert "X-Forwarded-Host" not in headers


def test_a_trusted_proxys_invalid_forwarded_host_is_replaced_by_the_validated_own_host() -> None:
    trusted = parse_networks(["10.0.0.0/8"])
    incoming = {"x-forwarded-host": ["localhost:@evil.example"]}
    headers = forwarded_headers(Hop("10.0.0.1", "GW.Example:8443", "https"), incoming, trusted)
    assert headers["X-Forwarded-Host"] == "gw.example:8443"
    good = forwarded_headers(Hop("10.0.0.1", "gw", "https"), {"x-forwarded-host": ["Wiki.Example"]}, trusted)
    assert good["X-Forwarded-Host"] == "wiki.example"


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        ("10.255.0.1", True),
        ("::ffff:10.0.0.9", True),  # an IPv4-mapped address is the IPv4 it maps
        ("2001:db8:1::5", True),
        ("11.0.0.1", False),
        ("2001:db9::1", False),
        ("not-an-ip", False),
        (None, False),
        ("", False),
    ],
)
def test_trust_is_decided_by_the_peer_address_only(peer: str | None, trusted: bool) -> None:
    assert is_trusted(peer, TRUSTED) is trusted


def test_no_trusted_networks_means_nobody_is_believed() -> None:
    headers = forwarded_headers(Hop("10.0.0.1", "gw", "https"), CLAIMS, ())
    assert headers["X-Forwarded-For"] == "10.0.0.1"
    assert headers["X-Forwarded-Host"] == "gw"


def test_networks_accept_host_bits_and_single_addresses() -> None:
    assert [str(n) for n in parse_networks(["10.1.2.3/8", "192.0.2.1", "::1"])] == [
        "10.0.0.0/8",
        "192.0.2.1/32",
        "::1/128",
    ]


def test_unknown_peer_is_named_unknown() -> None:
    headers = forwarded_headers(Hop(None, "gw", "https"), {}, TRUSTED)
    assert headers["X-Forwarded-For"] == "unknown"
    assert headers["Forwarded"].startswith("for=unknown;")

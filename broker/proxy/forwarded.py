"""Which ``X-Forwarded-*`` / ``Forwarded`` headers go upstream: a pure decision on the peer and its headers.

Anyone can send ``X-Forwarded-For: 10.0.0.1``, so what a client says about earlier hops is believed only
when the TCP peer is one of ``server.trusted_proxies`` (a load balancer in front of the broker):

- trusted peer: its chain is kept and the peer appended (``X-Forwarded-For``, ``Forwarded``, RFC 7239
  section 4); the original protocol and host it reports are kept.
- any other peer: everything it claimed is replaced by what the broker saw itself.

Only the immediate peer is checked; the broker does not try to find "the real client" in the chain: it passes
the chain on, and the upstream decides how far it trusts it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from broker.grammar.host import parse_host

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

FORWARDED_HEADERS = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"})
KNOWN_PROTOS = frozenset({"http", "https"})
UNKNOWN_PEER = "unknown"


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``server.trusted_proxies`` as networks (host bits allowed: ``10.0.0.1/8`` means ``10.0.0.0/8``)."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)


def peer_address(peer: str | None) -> IPAddress | None:
    """The peer as an address; IPv4-mapped IPv6 (``::ffff:10.0.0.1``) as the IPv4 it is."""
    if not peer:
        return None
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(peer: str | None, trusted: Sequence[IPNetwork]) -> bool:
    """Whether the TCP peer is a proxy whose forwarding headers the broker believes."""
    address = peer_address(peer)
    return address is not None and any(address in network for network in trusted)


MAX_FORWARDED_FOR = 4096  # characters of X-Forwarded-For read (a real chain is a handful of addresses)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> IPAddress | None:
    """The client as the trusted-proxy rules establish it: the TCP peer, or, when the peer is a trusted
    proxy, the nearest ``X-Forwarded-For`` hop that is not itself a trusted proxy.

    Hops to the right were written by our own proxies; anything further left is the client's own claim and
    never believed. Garbage where a trusted proxy writes an address counts as the proxy itself.
    """
    address = peer_address(peer)
    if address is None or not is_trusted(peer, trusted):
        return address
    hops = ",".join(forwarded_for)[-MAX_FORWARDED_FOR:].split(",")
    for hop in reversed(hops):
        claimed = peer_address(hop.strip())
        if claimed is None:
            return address
        if not any(claimed in network for network in trusted):
            return claimed
    return address


def _joined(values: Sequence[str]) -> str:
    """Several header lines of a list-valued header as one value (RFC 9110 section 5.3)."""
    return ", ".join(v.strip() for v in values if v.strip())


def _first(values: Sequence[str]) -> str:
    """The first element of a list-valued header: the hop nearest the original client."""
    joined = _joined(values)
    return joined.split(",", 1)[0].strip()


def _quoted(value: str) -> str:
    """An RFC 7230 quoted-string (``Forwarded`` values with ``:`` or ``[`` cannot be tokens)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def forwarded_for_node(peer: str | None) -> str:
    """The ``for=`` node of RFC 7239 section 6: IPv6 in brackets and quoted, ``unknown`` when unknown."""
    address = peer_address(peer)
    if address is None:
        return UNKNOWN_PEER
    if isinstance(address, ipaddress.IPv6Address):
        return _quoted(f"[{address}]")
    return str(address)


@dataclass(frozen=True)
class Hop:
    """What the broker itself knows about the request: the TCP peer, the Host it asked for, the scheme."""

    peer: str | None
    host: str
    scheme: str


def forwarded_headers(
    hop: Hop, incoming: Mapping[str, Sequence[str]], trusted: Sequence[IPNetwork]
) -> dict[str, str]:
    """The four forwarding headers to send upstream (``incoming`` maps lowercased names to all values)."""
    address = peer_address(hop.peer)
    peer = str(address) if address is not None else UNKNOWN_PEER
    # The Host as validated and normalised, never as written (``localhost:@evil.example`` is no host); the
    # request-id middleware has already refused invalid ones, so None here means "say nothing about it".
    own_host = validated_host(hop.host)
    host_part = f";host={_quoted(own_host)}" if own_host else ""
    element = f"for={forwarded_for_node(hop.peer)}{host_part};proto={hop.scheme}"
    headers: dict[str, str]
    if not is_trusted(hop.peer, trusted):
        headers = {"X-Forwarded-For": peer, "X-Forwarded-Proto": hop.scheme, "Forwarded": element}
        forwarded_host = own_host
    else:
        chain = _joined(incoming.get("x-forwarded-for", ()))
        proto = _first(incoming.get("x-forwarded-proto", ())).lower()
        earlier = _joined(incoming.get("forwarded", ()))
        headers = {
            "X-Forwarded-For": f"{chain}, {peer}" if chain else peer,
            "X-Forwarded-Proto": proto if proto in KNOWN_PROTOS else hop.scheme,
            "Forwarded": f"{earlier}, {element}" if earlier else element,
        }
        # A trusted proxy's original host is kept, but only as a valid host[:port], like our own.
        forwarded_host = validated_host(_first(incoming.get("x-forwarded-host", ()))) or own_host
    if forwarded_host:
        headers["X-Forwarded-Host"] = forwarded_host
    return headers


def validated_host(value: str) -> str | None:
    """A Host value in its normalised ``host[:port]`` spelling, or None when it is not valid."""
    parsed = parse_host(value.strip())
    return str(parsed) if parsed is not None else None

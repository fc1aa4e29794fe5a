"""``host[:port]`` as the ``Host`` header and listen addresses spell it.

The ``Host`` header is read with a strict ``host[:port]`` grammar, and its one normalised spelling. Pure.

RFC 9110 section 7.2 and RFC 3986 section 3.2.2: a host is a reg-name, an IPv4 address or a bracketed IP
literal, optionally followed by ``:port``. Anything else (userinfo ``user@``, spaces, a second colon, an
empty or out-of-range port, IPv6 zone ids, IPvFuture, non-ASCII) is refused, because servers, caches and the
upstream would each read such a value differently: ``localhost:@evil.example`` must never be routed as
``localhost`` and then forwarded verbatim.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

# RFC 1035 labels, relaxed as RFC 3986 reg-names are in practice: letters, digits, '-' and '_' (internal
# hostnames use it). Other reg-name characters ("!$&'()*+,;=", percent-encoding) are refused on purpose:
# no browser sends them and they are the material of header-injection and parser-confusion tricks.
# (Both cases spelt out: a case-insensitive class costs a case fold per character on every request.)
_REG_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63})*\.?$")
_PORT = re.compile(r"^[0-9]{1,5}$")
MAX_HOST_HEADER = 300  # 253 for a DNS name, plus brackets and a port, with room to spare
# A gateway sees a handful of Host spellings, each on every request (read twice: the check, the route):
# the answers are remembered. Bounded, so a client inventing Hosts only evicts (issue 19: 3.3 -> 0.13 us
# for both reads).
HOSTS_REMEMBERED = 1024


@dataclass(frozen=True)
class HostPort:
    """A validated Host: the host lower-cased (IPv6 in brackets, compressed) and the port, if given."""

    host: str
    port: int | None

    def __str__(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"


def _ipv6_literal(inner: str) -> str | None:
    """``[...]`` content as the compressed address; None for zone ids, IPvFuture or junk."""
    if "%" in inner:
        return None  # RFC 6874 zone ids have no meaning beyond the client's own machine
    try:
        return f"[{ipaddress.IPv6Address(inner).compressed}]"
    except ValueError:
        return None


@lru_cache(maxsize=HOSTS_REMEMBERED)
def parse_host(value: str) -> HostPort | None:
    """The Host header as host and port, or None when it is not a valid ``host[:port]`` (remembered: the
    answer is immutable and depends on ``value`` alone)."""
    if not value or len(value) > MAX_HOST_HEADER or not value.isascii():
        return None
    if value.startswith("["):
        inner, bracket, rest = value[1:].partition("]")
        host = _ipv6_literal(inner) if bracket else None
    else:
        name = value.partition(":")[0]
        host = name.lower() if _REG_NAME.match(name) and len(name.rstrip(".")) <= 253 else None
        rest = value[len(name) :]
    if host is None:
        return None
    if not rest:
        return HostPort(host, None)
    if not rest.startswith(":") or not _PORT.match(rest[1:]):
        return None
    port = int(rest[1:])
    return HostPort(host, port) if 1 <= port <= 65535 else None


def host_without_port(value: str) -> str | None:
    """The normalised host of a Host header (no port), or None when the header is invalid."""
    parsed = parse_host(value)
    return parsed.host if parsed is not None else None


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6; an empty host means every address) -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address must be host:port, got {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)

"""Which headers cross the broker, in each direction. Pure: header multidicts in, header multidicts out.

- Hop-by-hop headers (RFC 9110 section 7.6.1) and those named in ``Connection`` are dropped both ways.
- Client-sent identity headers are dropped in every spelling a backend could read as the same name
  (case, ``_`` vs ``-``), together with anything under the reserved ``X-Broker-`` prefix; then the
  broker adds its own. Every request leaves the broker through here, so stripping here covers every
  route, public ones included.
- The broker's own cookie is removed from ``Cookie``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from multidict import CIMultiDict, MultiMapping

from broker.forwarded import IPNetwork

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Set by the broker itself from what it knows; a client's copies are never passed on.
BROKER_SET = frozenset(
    {"host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-request-id"}
)
# Headers some upstreams read as the client's address, scheme or the "real" URL. The broker never sets
# them (it sends X-Forwarded-* and Forwarded, built from what it saw), and a client's copies would let it
# pose as another IP or path to an upstream that trusts them, so they are dropped on every route.
CLIENT_CLAIMED = frozenset(
    {
        "x-real-ip",
        "true-client-ip",
        "x-client-ip",
        "cf-connecting-ip",
        "x-cluster-client-ip",
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-uri",
        "x-forwarded-path",
        "x-forwarded-server",
        "x-forwarded-scheme",
        "x-forwarded-ssl",
        "front-end-https",
        "x-url-scheme",
    }
)
# The broker answers ``Expect: 100-continue`` itself once its own checks pass (RFC 9110 section 10.1.1);
# passing it on would make the upstream client wait for a second, upstream ``100 Continue``.
ANSWERED_BY_BROKER = frozenset({"expect"})
# A WebSocket handshake is made afresh on each side: the upstream client generates its own key.
WEBSOCKET_HANDSHAKE = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)
RESERVED_PREFIX = "x-broker-"


@dataclass(frozen=True)
class Forwarding:
    """What every forwarded request shares, fixed at start-up."""

    protected_headers: frozenset[str]
    cookie_name: str
    scheme: str
    trusted: tuple[IPNetwork, ...] = ()


def header_spelling(name: str) -> str:
    """The form two names share when a backend could read them as one (``X_User`` = ``x-user``)."""
    return name.lower().replace("_", "-")


def connection_listed(headers: MultiMapping[str]) -> set[str]:
    """Header names the sender marked hop-by-hop through ``Connection``."""
    listed: set[str] = set()
    for value in headers.getall("Connection", []):
        listed |= {header_spelling(v.strip()) for v in value.split(",") if v.strip()}
    return listed


def is_websocket_upgrade(headers: MultiMapping[str]) -> bool:
    """A WebSocket opening handshake (RFC 6455 4.1): ``Upgrade: websocket`` and ``Connection: upgrade``."""
    upgrade = {v.strip().lower() for value in headers.getall("Upgrade", []) for v in value.split(",")}
    return "websocket" in upgrade and "upgrade" in connection_listed(headers)


@lru_cache(maxsize=4096)  # the same browser sends the same header request after request
def without_cookie(cookie_header: str, name: str) -> str:
    """The ``Cookie`` header minus the broker's own cookie (the upstream must never see the ticket)."""
    kept = []
    for part in cookie_header.split(";"):
        key = part.split("=", 1)[0].strip()
        if key and key != name:
            kept.append(part.strip())
    return "; ".join(kept)


@lru_cache(maxsize=64)
def _always_dropped(protected: frozenset[str], websocket: bool) -> frozenset[str]:
    """Names never passed upstream, whatever the request (one set per config, not one per request)."""
    spellings = {header_spelling(p) for p in protected}
    drop = HOP_BY_HOP | BROKER_SET | CLIENT_CLAIMED | ANSWERED_BY_BROKER | spellings
    return drop | WEBSOCKET_HANDSHAKE if websocket else drop


def upstream_headers(
    incoming: MultiMapping[str],
    *,
    protected: Iterable[str],
    cookie_name: str,
    added: Mapping[str, str],
    websocket: bool = False,
) -> CIMultiDict[str]:
    """The headers to send upstream: the client's, filtered, plus the broker's own."""
    drop = _always_dropped(frozenset(protected), websocket)
    listed = connection_listed(incoming)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        spelling = header_spelling(name)
        if spelling in drop or spelling in listed or spelling.startswith(RESERVED_PREFIX):
            continue
        if spelling == "cookie":
            value = without_cookie(value, cookie_name)
            if not value:
                continue
        out.add(name, value)
    for name, value in added.items():
        out[name] = value
    return out


def response_headers(incoming: MultiMapping[str]) -> CIMultiDict[str]:
    """The upstream's response headers minus hop-by-hop ones (multiple ``Set-Cookie`` are kept)."""
    listed = connection_listed(incoming)
    if any("_" in name for name in incoming):  # rare: compare every name in its dashed spelling
        return CIMultiDict(
            (k, v)
            for k, v in incoming.items()
            if (spelling := header_spelling(k)) not in HOP_BY_HOP and spelling not in listed
        )
    out = CIMultiDict(incoming)  # copied in C, then the few hop-by-hop names removed
    for name in HOP_BY_HOP | listed:
        out.popall(name, None)
    return out

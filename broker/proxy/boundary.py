"""Which headers cross the broker, in each direction: ``UpstreamBoundary``, built once from the config,
owns every rule below. Pure: header multidicts in, header multidicts out.

- Hop-by-hop headers (RFC 9110 section 7.6.1) and those named in ``Connection`` are dropped both ways.
- Client-sent identity headers are dropped in every spelling a backend could read as the same name:
  names are compared *folded* (lower case, only ``[a-z0-9]`` kept), the way CGI-style servers fold
  ``X-Forwarded.User`` and ``X_FORWARDED_USER`` into one variable. Dropped: the broker's own identity
  headers, anything under the reserved ``X-Broker-`` prefix, and a built-in deny-list of identity and
  token headers other proxies set (legacy apps often still trust them), plus
  ``server.strip_request_headers``. Then the broker adds its own. Every request leaves the broker through
  here, so stripping here covers every route, public ones included.
- A client's W3C trace context (``traceparent``, ``tracestate``, ``baggage``) passes only from a trusted
  proxy (``server.trusted_proxies``), tracing on or off: the rule the tracing middleware continues a trace by.
- The ``Cookie`` header going upstream is the one ``CookiePolicy`` rebuilt without the broker's cookies.
- No upstream answer may set, overwrite or delete a broker cookie: such ``Set-Cookie`` lines are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from types import MappingProxyType
from urllib.parse import urlsplit

from multidict import CIMultiDict, MultiMapping

from broker.config.schema import BrokerConfig
from broker.proxy.forwarded import Hop, IPNetwork, forwarded_headers, is_trusted, parse_networks
from broker.sessions.cookie import CookiePolicy
from broker.sessions.cookie_header import names_set_by

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
# ``HeaderFilter.kept`` remembers this many header names per filter, each of at most MEMO_MAX_NAME characters
# (longer ones, which no browser sends, are folded each time): under 100 KB whatever clients send.
NAME_MEMO = 1024
MEMO_MAX_NAME = 64
# W3C Trace Context (traceparent, tracestate) and W3C Baggage: passed on only from a trusted proxy. Anyone
# else could pick the trace ids an upstream logs and samples by, or hand it baggage entries (often read as
# tenant or user hints) that look as if the broker's own hop had set them.
TRACE_CONTEXT = frozenset({"traceparent", "tracestate", "baggage"})
# Identity and token headers that other identity-aware proxies set (oauth2-proxy, Authelia, Apache
# mod_auth_openidc and mod_shib, Azure App Service, Pomerium, Google IAP, AWS ALB, Cloudflare Access,
# Kong, Grafana's auth proxy, TLS terminators passing client certificates). The broker sets none of them;
# a legacy app behind an earlier proxy may still trust them, so a client's copies never pass.
IDENTITY_NAMES = frozenset(
    {
        "X-Forwarded-User",
        "X-Forwarded-Email",
        "X-Forwarded-Groups",
        "X-Forwarded-Preferred-Username",
        "X-Forwarded-Access-Token",
        "X-Forwarded-Name",
        "Remote-User",
        "Remote-Email",
        "Remote-Groups",
        "Remote-Name",
        "X-User",
        "X-Username",
        "X-Email",
        "X-Userinfo",
        "X-Id-Token",
        "X-Access-Token",
        "X-Authenticated-User",
        "X-Authenticated-Userid",
        "X-Consumer-Id",
        "X-Consumer-Username",
        "X-Consumer-Custom-Id",
        "X-Credential-Identifier",
        "X-Anonymous-Consumer",
        "X-Client-Cert",
        "X-ARR-ClientCert",
        "X-Forwarded-Client-Cert",
        "SSL-Client-Cert",
    }
)
# The same, as families: every name starting with one of these (after folding).
IDENTITY_PREFIXES = frozenset(
    {
        "X-Broker-",
        "X-Auth-Request-",
        "X-Remote-",
        "X-MS-CLIENT-PRINCIPAL",
        "X-MS-TOKEN-",
        "OIDC-",
        "X-Pomerium-",
        "X-Goog-Authenticated-",
        "X-Goog-IAP-",
        "X-Amzn-Oidc-",
        "Cf-Access-",
        "X-WebAuth-",
        "Shib-",
        "X-SSL-Client-",
        "Client-Cert",
    }
)
_NOT_ALNUM = bytes(c for c in range(256) if not chr(c).isascii() or not chr(c).isalnum())


def fold(name: str) -> str:
    """A header name as CGI-style servers may read it: lower case, only ``[a-z0-9]`` kept
    (``X_Forwarded_User``, ``x-forwarded-user.`` and ``X-FORWARDED-USER`` are all ``xforwardeduser``)."""
    common = name.lower().replace("-", "")  # the usual name: letters, digits and dashes (cheapest path)
    if common.isalnum() and common.isascii():
        return common
    return name.encode("ascii", "ignore").lower().translate(None, _NOT_ALNUM).decode("ascii")


@dataclass(frozen=True)
class HeaderFilter:
    """Request header names never passed upstream, folded; built once per config."""

    names: frozenset[str]
    prefixes: tuple[str, ...]
    # Of ``names``, those a trusted proxy may send (its trace context), unless the config strips them.
    trusted_may_send: frozenset[str] = field(default=frozenset())

    @classmethod
    def build(cls, protected: Iterable[str], extra: Iterable[str] = ()) -> HeaderFilter:
        """The fixed sets, the deny-list, the broker's identity headers and the configured extras
        (a trailing ``*`` makes an extra a prefix)."""
        extra = list(extra)
        names = (
            HOP_BY_HOP
            | BROKER_SET
            | CLIENT_CLAIMED
            | ANSWERED_BY_BROKER
            | IDENTITY_NAMES
            | TRACE_CONTEXT
            | set(protected)
            | {e for e in extra if not e.endswith("*")}
        )
        prefixes = IDENTITY_PREFIXES | {e.removesuffix("*") for e in extra if e.endswith("*")}
        stripped_anyway = {fold(n) for n in [*protected, *extra]}
        return cls(
            frozenset(fold(n) for n in names),
            tuple(sorted({fold(p) for p in prefixes})),
            frozenset(fold(n) for n in TRACE_CONTEXT) - stripped_anyway,
        )

    @cached_property
    def from_trusted_proxy(self) -> HeaderFilter:
        """This filter for a request from a trusted proxy: its trace context passes (made once)."""
        return HeaderFilter(self.names - self.trusted_may_send, self.prefixes)

    def drops(self, folded: str) -> bool:
        """True for a (folded) name that must not reach an upstream."""
        return folded in self.names or folded.startswith(self.prefixes)

    @cached_property
    def _kept_names(self) -> Callable[[str], str | None]:
        return lru_cache(maxsize=NAME_MEMO)(self._kept)

    def _kept(self, name: str) -> str | None:
        folded = fold(name)
        return None if self.drops(folded) else folded

    def kept(self, name: str) -> str | None:
        """A header name as sent: its folded spelling when this filter lets it pass, else None. Remembered
        per filter (per config) for names of up to ``MEMO_MAX_NAME`` characters: a browser sends the same
        dozen names on every request."""
        if len(name) > MEMO_MAX_NAME:
            return self._kept(name)
        return self._kept_names(name)


HOP_BY_HOP_FOLDED = frozenset(fold(n) for n in HOP_BY_HOP)
WEBSOCKET_HANDSHAKE_FOLDED = frozenset(fold(n) for n in WEBSOCKET_HANDSHAKE)
COOKIE = "cookie"
SET_COOKIE_HEADERS = ("Set-Cookie", "Set-Cookie2")
# The forwarding headers of a peer that is no trusted proxy depend on its address and the (validated) Host
# alone: remembered for this many pairs per boundary (per config), instead of parsing the address and the
# Host and formatting four headers on every request. Both keys are short (an address; a Host the request
# middleware bounded to 300 characters), so the memo stays under a megabyte whatever clients send.
FORWARDING_MEMO = 1024
# Whether a peer address is a trusted proxy, remembered for this many addresses per boundary (parsing the
# address is ~2.5 us, asked on every forward-auth check and every proxied request once proxies are trusted).
TRUSTED_PEER_MEMO = 1024


def identity_header_names(config: BrokerConfig) -> frozenset[str]:
    """Every header the broker sets from identity (the assertion, each route's ``headers``, each company's
    default ``headers``, which reach every route its users use): clients may never supply any of them."""
    names = {config.signing.assertion_header}
    for route in config.routes:
        names |= set(route.headers)
    for tenant in config.tenants.values():
        names |= set(tenant.headers)
    return frozenset(names)


@dataclass(frozen=True)
class UpstreamBoundary:
    """What crosses between the client and the upstream, in both directions, for every route; built once
    per config (``from_config``) and held by the gateway, so each rule lives here and only here."""

    dropped: HeaderFilter
    cookies: CookiePolicy
    scheme: str
    trusted: tuple[IPNetwork, ...] = ()
    _own_forwarding: Callable[[str | None, str], Mapping[str, str]] = field(
        init=False, repr=False, compare=False
    )
    _trusts: Callable[[str | None], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        remembered = lru_cache(maxsize=FORWARDING_MEMO)(self._forwarding_of)
        object.__setattr__(self, "_own_forwarding", remembered)
        trusts = lru_cache(maxsize=TRUSTED_PEER_MEMO)(self._trusts_peer)
        object.__setattr__(self, "_trusts", trusts)

    def _trusts_peer(self, peer: str | None) -> bool:
        return is_trusted(peer, self.trusted)

    def trusts(self, peer: str | None) -> bool:
        """Whether the TCP peer is one of ``server.trusted_proxies``. With none configured (most
        deployments) no address is looked up or remembered."""
        return bool(self.trusted) and self._trusts(peer)

    def _forwarding_of(self, peer: str | None, host: str) -> Mapping[str, str]:
        return MappingProxyType(forwarded_headers(Hop(peer, host, self.scheme), {}, self.trusted))

    def forwarding(
        self, peer: str | None, host: str, claimed: Mapping[str, list[str]] | None
    ) -> Mapping[str, str]:
        """The ``X-Forwarded-*`` and ``Forwarded`` headers for a request from ``peer`` to ``host``.
        ``claimed``: what a trusted proxy said about earlier hops (None: the peer is not one, and everything
        a client claimed is replaced by what the broker saw; that answer is remembered, read-only, and is
        also the answer for a trusted proxy that claimed nothing)."""
        if claimed is not None and any(claimed.values()):
            return forwarded_headers(Hop(peer, host, self.scheme), claimed, self.trusted)
        return self._own_forwarding(peer, host)

    @classmethod
    def from_config(cls, config: BrokerConfig, cookies: CookiePolicy) -> UpstreamBoundary:
        """The boundary ``config`` sets. ``cookies`` is the policy (and memo) that also reads sessions, so
        the cookie the broker reads and the Cookie header it strips are one reading."""
        return cls(
            dropped=HeaderFilter.build(identity_header_names(config), config.server.strip_request_headers),
            cookies=cookies,
            scheme=urlsplit(config.server.public_url).scheme,
            trusted=parse_networks(config.server.trusted_proxies),
        )

    def request_headers(
        self,
        incoming: MultiMapping[str],
        added: Mapping[str, str],
        *,
        websocket: bool = False,
        from_trusted_proxy: bool = False,
    ) -> CIMultiDict[str]:
        """The client's headers as the upstream gets them: filtered, the Cookie header without the broker's
        cookies, then the broker's ``added`` (forwarding and identity headers). ``from_trusted_proxy``: the
        peer is in ``server.trusted_proxies``, so its trace context is passed on."""
        return upstream_headers(
            incoming,
            dropped=self.dropped.from_trusted_proxy if from_trusted_proxy else self.dropped,
            cookie=self.cookies.cookies(incoming).upstream,
            added=added,
            websocket=websocket,
        )

    def response_headers(self, incoming: MultiMapping[str]) -> tuple[CIMultiDict[str], list[str]]:
        """The upstream's answer headers as the client gets them, and the broker cookies it tried to set."""
        return response_headers(incoming, self.cookies.families)

    def without_authorization(self) -> UpstreamBoundary:
        """This boundary, also dropping ``Authorization``: for bearer calls, whose token stays at the broker
        unless the route asks for it (the signed assertion carries the identity upstream)."""
        names = self.dropped.names | {fold("Authorization")}
        return replace(self, dropped=replace(self.dropped, names=names))


def connection_listed(headers: MultiMapping[str]) -> set[str]:
    """Header names (folded) the sender marked hop-by-hop through ``Connection``."""
    listed: set[str] = set()
    for value in headers.getall("Connection", []):
        listed |= {fold(v) for v in value.split(",") if v.strip()}
    return listed


def is_websocket_upgrade(headers: MultiMapping[str]) -> bool:
    """A WebSocket opening handshake (RFC 6455 4.1): ``Upgrade: websocket`` and ``Connection: upgrade``."""
    upgrade = {v.strip().lower() for value in headers.getall("Upgrade", []) for v in value.split(",")}
    return "websocket" in upgrade and "upgrade" in connection_listed(headers)


def upstream_headers(
    incoming: MultiMapping[str],
    *,
    dropped: HeaderFilter,
    cookie: str | None,
    added: Mapping[str, str],
    websocket: bool = False,
) -> CIMultiDict[str]:
    """The headers to send upstream: the client's, filtered, plus the broker's own.

    ``cookie`` is the Cookie header as ``CookiePolicy`` rebuilt it without the broker's cookies: the
    client's Cookie lines are never passed as they are.
    """
    listed = connection_listed(incoming)
    kept = dropped.kept
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        folded = kept(name)
        if (
            folded is None
            or folded in listed
            or folded == COOKIE
            or (websocket and folded in WEBSOCKET_HANDSHAKE_FOLDED)
        ):
            continue
        out.add(name, value)
    if cookie is not None:
        out["Cookie"] = cookie
    for name, value in added.items():
        out[name] = value
    return out


def response_headers(
    incoming: MultiMapping[str], broker_cookies: frozenset[str]
) -> tuple[CIMultiDict[str], list[str]]:
    """The upstream's response headers minus hop-by-hop ones and any ``Set-Cookie``/``Set-Cookie2`` that
    would set, overwrite or delete a broker cookie (``broker_cookies``: their families); the app's other
    cookies are kept. Also returns the broker cookie names the upstream tried to set (for the log)."""
    listed = connection_listed(incoming) - HOP_BY_HOP_FOLDED
    if listed or any("_" in name for name in incoming):
        # Rare: odd spellings or Connection-listed names; compare every name folded.
        out: CIMultiDict[str] = CIMultiDict(
            (k, v) for k, v in incoming.items() if (f := fold(k)) not in HOP_BY_HOP_FOLDED and f not in listed
        )
    else:
        out = CIMultiDict(incoming)  # copied in C, then the few hop-by-hop names removed
        for name in HOP_BY_HOP:
            out.popall(name, None)
    refused: list[str] = []
    for header in SET_COOKIE_HEADERS:
        if header in out:
            refused += _without_broker_cookies(out, header, broker_cookies)
    return out, refused


def _without_broker_cookies(headers: CIMultiDict[str], header: str, families: frozenset[str]) -> list[str]:
    """Remove the ``header`` lines that would set a cookie of one of ``families``; return their names."""
    lines = headers.getall(header)
    kept: list[str] = []
    refused: list[str] = []
    for line in lines:
        lowered = line.lower()
        # A line that does not even contain a family's name cannot set it: most lines stop here.
        hit = [n for n in names_set_by(line) if n in families] if any(f in lowered for f in families) else []
        if hit:
            refused += hit
        else:
            kept.append(line)
    if refused:
        headers.popall(header)
        for line in kept:
            headers.add(header, line)
    return refused

"""A session's identity as plain headers: each route's header expressions (over the company's defaults),
compiled once per config load, evaluated per session, and encoded so that no claim can forge a header.

Encoding (a claim is user- or admin-controlled text, never trusted as header syntax):

- printable ASCII is sent as is;
- anything else (non-ASCII, and CR, LF, NUL or any control character) is sent as an RFC 8187 ext-value,
  ``UTF-8''<percent-encoded>``, with ``header_non_ascii: rfc8187`` (the default); with ``utf8`` non-ASCII
  goes as UTF-8 bytes and a value with a control character is not sent at all;
- a printable value that itself starts with ``UTF-8''`` is encoded too, so an upstream that decodes
  RFC 8187 can never be handed a pre-encoded value (``UTF-8''%41dmin``) it would read as another name;
- a value longer than ``header_max_length`` is not sent: cut short, ``adele-admin`` could become ``adele``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from broker.config.schema import BrokerConfig, RouteConfig
from broker.grammar.claim_expression import Node, Ref, Value, evaluate, parse_expression
from broker.sessions.model import Session

RFC8187_PREFIX = "UTF-8''"
# RFC 8187 section 3.2.1 attr-char: ALPHA / DIGIT / "!" / "#" / "$" / "&" / "+" / "-" / "." / "^" / "_" /
# "`" / "|" / "~"; everything else is percent-encoded (quote keeps letters, digits and "_.-~" unescaped).
ATTR_CHAR_EXTRA = "!#$&+^`|"


def encode_header_value(value: str, non_ascii: str, max_length: int) -> str | None:
    """The value as it may be sent in a header, or None when it must not be sent."""
    printable = value.isascii() and value.isprintable()
    if printable and not value[: len(RFC8187_PREFIX)].upper() == RFC8187_PREFIX.upper():
        encoded: str | None = value
    elif non_ascii == "rfc8187" or printable:
        encoded = RFC8187_PREFIX + quote(value, safe=ATTR_CHAR_EXTRA, encoding="utf-8")
    else:
        # utf8: non-ASCII as is; control characters (header splitting) never.
        encoded = None if any(ch.isascii() and not ch.isprintable() for ch in value) else value
    return encoded if encoded is not None and len(encoded) <= max_length else None


def read_session(session: Session) -> Callable[[Ref], Value]:
    """A reader of references for ``evaluate``: kept claims, and the broker's own fields."""
    public = session.public_claims()

    def read(ref: Ref) -> Value:
        raw = session.claims.get(ref.name) if ref.claim else public.get(ref.name)
        if raw is None:
            return None
        if isinstance(raw, list):
            return [str(v) for v in raw]
        if isinstance(raw, bool):
            return "true" if raw else "false"
        return str(raw)

    return read


@dataclass(frozen=True)
class RouteHeaders:
    """One route's header expressions for one company (the route's own over the company's defaults)."""

    expressions: tuple[tuple[str, Node], ...]
    non_ascii: str
    max_length: int

    def values(self, session: Session) -> dict[str, str]:
        """The headers for this session: a missing value or one that may not be sent is left out."""
        read = read_session(session)
        out: dict[str, str] = {}
        for name, node in self.expressions:
            value = evaluate(node, read)
            text = ",".join(value) if isinstance(value, list) else value
            if text is None or text == "":
                continue
            encoded = encode_header_value(text, self.non_ascii, self.max_length)
            if encoded is not None:
                out[name] = encoded
        return out


def route_headers(route: RouteConfig, defaults: Mapping[str, str]) -> RouteHeaders:
    """Compile a route's header map over a company's defaults (a route's header replaces the same name)."""
    merged = {name.lower(): (name, text) for name, text in defaults.items()}
    merged |= {name.lower(): (name, text) for name, text in route.headers.items()}
    return RouteHeaders(
        tuple((name, parse_expression(text)) for name, text in merged.values()),
        route.header_non_ascii,
        route.header_max_length,
    )


class HeaderMaps:
    """Every route's compiled header expressions per company: built once per config load."""

    def __init__(self, config: BrokerConfig) -> None:
        self._maps: dict[tuple[int, str], RouteHeaders] = {}
        self._any: RouteHeaders | None = None
        for index, route in enumerate(config.routes):
            for code, tenant in config.tenants.items():
                if route.headers or tenant.headers:
                    self._maps[(index, code)] = route_headers(route, tenant.headers)

    @classmethod
    def for_route(cls, index: int, route: RouteConfig) -> HeaderMaps:
        """One route's own headers for every company (no company defaults): for a gateway built in code."""
        maps = cls.__new__(cls)
        maps._maps = {}
        maps._any = route_headers(route, {}) if route.headers else None
        return maps

    def headers(self, route_index: int, session: Session) -> dict[str, str]:
        """The plain identity headers for a session on a route."""
        compiled = self._maps.get((route_index, session.login_code), self._any)
        return compiled.values(session) if compiled is not None else {}

"""Single-value rules of the schema (formats, bounds): pydantic after-validators with the broker's messages.

Each rule looks at one value only, so pydantic checks it whatever else in the file is wrong. Rules that
compare several values (cross-references, either/or keys, files on disk) live in ``validate.py``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

from broker.config.fields import problem
from broker.grammar.claim_expression import ExpressionError, parse_expression
from broker.grammar.path_folding import widest_fold
from broker.http import paths

T = TypeVar("T")
Number = TypeVar("Number", int, float)

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.IGNORECASE)
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
LISTEN = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]*):\d{1,5}$")
ALIAS = re.compile(r"^/[A-Za-z0-9._~/-]*\{code\}$")
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
SESSION_STORE_SCHEMES = frozenset(
    {"redis", "rediss", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"}
)
UPSTREAM_SCHEMES = frozenset({"http", "https"})
MULTI_TENANT_IDS = ("organizations", "common")
MIN_SESSION_SECRET_KEY_BYTES = 32
# A configured header to strip: a header name, or a name prefix ending in "*".
STRIP_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'+.^_`|~-]+\*?$")
# Folded prefixes shorter than this would strip most headers ("X-*").
MIN_STRIP_PREFIX = 4
HEADER_CLAIMS = frozenset(
    {"sub", "tid", "oid", "name", "email", "preferred_username", "role", "roles", "groups", "login_code"}
)


def is_loopback_http(url: str) -> bool:
    """Plain http is acceptable only on the local machine (development and the demo)."""
    parts = urlsplit(url)
    return parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS


def url(what: str) -> Callable[[str], str]:
    """An absolute http(s) URL; https unless on localhost (tokens and cookies never cross a network clear)."""

    def check(value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise problem(f"{what} must be an absolute http(s) URL (got {value!r})")
        if parts.scheme == "http" and not is_loopback_http(value):
            raise problem(f"{what} must use https (plain http is allowed only for localhost)")
        return value

    return check


def matches(pattern: re.Pattern[str], message: str) -> Callable[[str], str]:
    """The value matches ``pattern``; ``message`` may name it as ``{value!r}``."""

    def check(value: str) -> str:
        if not pattern.match(value):
            raise problem(message.format(value=value))
        return value

    return check


def between(low: Number, high: Number, message: str) -> Callable[[Number], Number]:
    """``low <= value <= high``."""

    def check(value: Number) -> Number:
        if not low <= value <= high:
            raise problem(message)
        return value

    return check


def positive(message: str) -> Callable[[float], float]:
    """More than zero: a timeout of 0 would disable it, which the broker never allows."""

    def check(value: float) -> float:
        if not value > 0:
            raise problem(message)
        return value

    return check


def at_most(high: float, message: str) -> Callable[[float], float]:
    """``value <= high``."""

    def check(value: float) -> float:
        if value > high:
            raise problem(message)
        return value

    return check


def tenant_id(value: str) -> str:
    """A tenant GUID, a verified domain, or a multi-tenant ID; never personal accounts."""
    if value.lower() == "consumers":
        raise problem("personal Microsoft accounts ('consumers') are not supported")
    if not (GUID.match(value) or DOMAIN.match(value) or value.lower() in MULTI_TENANT_IDS):
        raise problem(f"must be a GUID or a verified domain (got {value!r})")
    return value


def has_openid(scopes: list[str]) -> list[str]:
    """OpenID Connect needs the ``openid`` scope (without it there is no ID token)."""
    if "openid" not in scopes:
        raise problem("must include 'openid'")
    return scopes


def route_path(value: str) -> str:
    """A path prefix that every server reads the same way."""
    if not value.startswith("/"):
        raise problem("must start with '/'")
    if widest_fold(value) is None:
        raise problem("has a segment that servers read differently (only dots/spaces, look-alikes)")
    return value


def starts_with_slash(message: str) -> Callable[[str], str]:
    """A path starting with '/'."""

    def check(value: str) -> str:
        if not value.startswith("/"):
            raise problem(message)
        return value

    return check


def upstream(value: str) -> str:
    """``http://``, ``https://`` or ``unix:/absolute/path.sock``."""
    if value.startswith("unix:"):
        if not value.removeprefix("unix:").startswith("/"):
            raise problem("a unix socket upstream is unix:/absolute/path.sock")
        return value
    parts = urlsplit(value)
    if parts.scheme not in UPSTREAM_SCHEMES or not parts.hostname:
        raise problem(f"must be http://, https:// or unix:/path (got {value!r})")
    return value


def header_name(value: str) -> str:
    """An HTTP header name (RFC 9110 token)."""
    if not HEADER_NAME.match(value):
        raise problem("is not a valid HTTP header name")
    return value


def header_expression(value: str) -> str:
    """A header expression (``claims.upn | strip_domain | upper``); a plain field name is one too."""
    try:
        parse_expression(value)
    except ExpressionError as exc:
        raise problem(str(exc)) from None
    return value


# What the assertion carries already (or must: issuer, audience, times): never replaced by a kept claim.
ASSERTION_RESERVED = HEADER_CLAIMS | {"iss", "aud", "iat", "exp", "nbf", "jti"}


def assertion_claim(value: str) -> str:
    """A kept claim the assertion may carry under its own name."""
    claim_name(value)
    if value.endswith("*"):
        raise problem("name one claim (no '*')")
    if value in ASSERTION_RESERVED:
        raise problem(f"'{value}' is one of the assertion's own claims")
    return value


def websocket_origin(value: str) -> str:
    """An origin exactly (``scheme://host[:port]``), no path, no user."""
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or f"{parts.scheme}://{parts.netloc}" != value
    ):
        raise problem(f"must be an origin like https://app.example.com (got {value!r})")
    return value


def cidr(value: str) -> str:
    """An IP network."""
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise problem(f"not an IP network (CIDR) {value!r}") from None
    return value


def strip_header(value: str) -> str:
    """A header name or a ``Prefix-*`` long enough not to strip most headers."""
    folded = "".join(c for c in value.lower() if c.isascii() and c.isalnum())
    if not STRIP_HEADER.match(value) or not folded:
        raise problem(f"not a header name or 'Prefix-*' ({value!r})")
    if value.endswith("*") and len(folded) < MIN_STRIP_PREFIX:
        raise problem(f"prefix {value!r} is too short: it would strip most headers")
    return value


def login_alias(value: str) -> str:
    """A path ending in ``{code}``, outside the gateway's own ``/.auth/``."""
    if not ALIAS.match(value) or value.startswith(paths.AUTH_PREFIX):
        raise problem("must be a path ending in '{code}', e.g. /login/{code}")
    return value


def worker_timeout(beat: float) -> Callable[[float], float]:
    """Positive, and long enough for two heartbeats."""

    def check(value: float) -> float:
        if value <= 0:
            raise problem("must be positive (it is never disabled)")
        if value < 2 * beat:
            raise problem(f"must be at least {2 * beat:g}s (workers beat every {beat:g}s)")
        return value

    return check


def session_store(value: str) -> str:
    """``memory`` or a Redis URL the store understands."""
    if value != "memory" and urlsplit(value).scheme not in SESSION_STORE_SCHEMES:
        raise problem("must be 'memory' or a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL")
    return value


def decode_secret_key(text: str) -> bytes | None:
    """A ``sessions.secret_keys`` entry as bytes (base64 or base64url); None when it is not one of at least
    ``MIN_SESSION_SECRET_KEY_BYTES`` bytes."""
    cleaned = text.strip().replace("-", "+").replace("_", "/").rstrip("=")
    try:
        raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) >= MIN_SESSION_SECRET_KEY_BYTES else None


SECRET_KEY_HOW = "generate one with `openssl rand -base64 32`"


def secret_key(value: str) -> str:
    """Base64 of enough random bytes to seal sessions."""
    if decode_secret_key(value) is None:
        raise problem(
            f"must be base64 of at least {MIN_SESSION_SECRET_KEY_BYTES} random bytes ({SECRET_KEY_HOW})"
        )
    return value


def no_repeats(message: str) -> Callable[[list[T]], list[T]]:
    """No value twice."""

    def check(values: list[T]) -> list[T]:
        if len(set(values)) != len(values):
            raise problem(message)
        return values

    return check


def not_empty(message: str) -> Callable[[list[T]], list[T]]:
    """At least one value."""

    def check(values: list[T]) -> list[T]:
        if not values:
            raise problem(message)
        return values

    return check


def at_least(low: int, message: str) -> Callable[[int], int]:
    """``value >= low``."""

    def check(value: int) -> int:
        if value < low:
            raise problem(message)
        return value

    return check


CLAIM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,99}\*?$")


def claim_name(value: str) -> str:
    """An ID-token claim name (``upn``, ``extn.costCenter``, ``xms_pdl``), or a ``prefix*`` of names."""
    if not CLAIM_NAME.match(value):
        raise problem(f"not a claim name {value!r}")
    return value


# Claims a session holds anyway or must never keep (token material, replay-relevant values).
NEVER_KEPT = frozenset({"nonce", "at_hash", "c_hash", "aud", "iss", "exp", "iat", "nbf", "sid", "login_hint"})


def claim_kept(name: str, keep: Sequence[str]) -> bool:
    """Whether a ``keep_claims`` list names this claim: exactly, or by a ``prefix*`` pattern (``extn.*``)."""
    if name in NEVER_KEPT:
        return False
    return any(name == k or (k.endswith("*") and name.startswith(k[:-1])) for k in keep)


# A company's accent colour goes into the pages' <style>, where HTML escaping does not protect: only a plain
# CSS hex colour (#rgb or #rrggbb) can never close the rule or the element.
CSS_HEX_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
# A logo is an https URL whose characters cannot end a CSP source expression (no space, ';', ',', quote),
# because the page's Content-Security-Policy names that very URL (and nothing else) in img-src.
LOGO_HTTPS_URL = re.compile(
    r"^https://[A-Za-z0-9.-]+(?::\d{1,5})?(?:/[A-Za-z0-9._~!$&()*+=:@%/-]*)?(?:\?[A-Za-z0-9._~!$&()*+=:@%/?-]*)?$"
)
# Or an image inline, so a gateway without egress can still show it. SVG is safe here: an <img> never
# runs a document's scripts.
LOGO_DATA_URL = re.compile(r"^data:image/(?:png|jpeg|gif|webp|svg\+xml);base64,[A-Za-z0-9+/]+={0,2}$")
MAX_LOGO_URL = 2048
MAX_LOGO_DATA_URL = 64 * 1024


def css_hex_color(value: str) -> str:
    """``#rgb`` or ``#rrggbb``: the only colour syntax that reaches a page's stylesheet."""
    if not CSS_HEX_COLOR.match(value):
        raise problem(f"must be a CSS hex colour like #0b5cad or #08c (got {value!r})")
    return value


def logo_url(value: str) -> str:
    """An https image URL or a base64 ``data:image/...`` URL, bounded, safe to name in a CSP."""
    if value.startswith("data:"):
        if len(value) > MAX_LOGO_DATA_URL or not LOGO_DATA_URL.match(value):
            raise problem(
                "a data: logo must be data:image/(png|jpeg|gif|webp|svg+xml);base64,... "
                f"of at most {MAX_LOGO_DATA_URL // 1024} KiB"
            )
        return value
    if len(value) > MAX_LOGO_URL or not LOGO_HTTPS_URL.match(value):
        raise problem(
            "must be an https:// URL (without spaces, quotes, ';' or ',') or a data:image/...;base64 URL "
            f"(got {value[:80]!r})"
        )
    return value

"""Checks that need more than types: formats, cross-references, and safety rules (fail closed).

Each check yields ``(key_path, message)``; the loader attaches file and line numbers.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from broker.config import schema

KeyPath = tuple[str | int, ...]

LOGIN_CODE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
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
HEADER_CLAIMS = frozenset(
    {"sub", "tid", "oid", "name", "email", "preferred_username", "role", "roles", "groups", "login_code"}
)


def is_loopback_http(url: str) -> bool:
    """Plain http is acceptable only on the local machine (development and the demo)."""
    parts = urlsplit(url)
    return parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS


def _check_url(url: str, path: KeyPath, what: str) -> Iterator[tuple[KeyPath, str]]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        yield path, f"{what} must be an absolute http(s) URL (got {url!r})"
    elif parts.scheme == "http" and not is_loopback_http(url):
        yield path, f"{what} must use https (plain http is allowed only for localhost)"


def _check_tenant(code: str, t: schema.TenantConfig) -> Iterator[tuple[KeyPath, str]]:
    base: KeyPath = ("tenants", code)
    if not LOGIN_CODE.match(code):
        yield base, "login code must be lowercase letters, digits and '-' (at most 64)"
    if not (
        GUID.match(t.tenant_id) or DOMAIN.match(t.tenant_id) or t.tenant_id.lower() in schema.MULTI_TENANT_IDS
    ):
        yield (*base, "tenant_id"), f"must be a GUID or a verified domain (got {t.tenant_id!r})"
    multi_tenant = t.tenant_id.lower() in schema.MULTI_TENANT_IDS
    if t.tenant_id.lower() == "consumers":
        yield (*base, "tenant_id"), "personal Microsoft accounts ('consumers') are not supported"
    if multi_tenant and not t.allowed_tenants:
        # Fail closed: an 'organizations' app without an allow-list would admit every Entra tenant.
        yield (
            (*base, "allowed_tenants"),
            f"required with tenant_id '{t.tenant_id}': list the tenant GUIDs allowed",
        )
    if t.allowed_tenants and not multi_tenant:
        yield (*base, "allowed_tenants"), "only for multi-tenant apps (tenant_id: organizations)"
    for i, allowed in enumerate(t.allowed_tenants):
        if not GUID.match(allowed):
            yield (*base, "allowed_tenants", i), f"must be a tenant GUID (got {allowed!r})"
    if not GUID.match(t.client_id):
        yield (*base, "client_id"), f"must be the application (client) ID GUID (got {t.client_id!r})"
    if not t.client_secret and t.certificate is None:
        yield base, "needs a credential: client_secret (or client_secret_file) or certificate"
    if t.client_secret and t.certificate is not None:
        yield base, "give either client_secret or certificate, not both"
    yield from _check_url(t.authority, (*base, "authority"), "authority")
    yield from _check_url(t.graph_url, (*base, "graph_url"), "graph_url")
    if "openid" not in t.scopes:
        yield (*base, "scopes"), "must include 'openid'"
    order = t.roles.order
    if t.roles.require_role and t.roles.default is not None:
        yield (
            (*base, "roles", "require_role"),
            "contradicts roles.default (a default role means nobody lacks one)",
        )
    if t.roles.default is not None and t.roles.default not in order:
        yield (*base, "roles", "default"), f"'{t.roles.default}' is not in roles.order"
    for section in ("app_roles", "groups"):
        for source, role in getattr(t.roles, section).items():
            if role not in order:
                yield (*base, "roles", section, source), f"'{role}' is not in roles.order"


def _check_route(
    i: int, r: schema.RouteConfig, codes: set[str], tenants: dict[str, schema.TenantConfig]
) -> Iterator[tuple[KeyPath, str]]:
    base: KeyPath = ("routes", i)
    if not r.path.startswith("/"):
        yield (*base, "path"), "must start with '/'"
    parts = urlsplit(r.upstream)
    if r.upstream.startswith("unix:"):
        if not r.upstream.removeprefix("unix:").startswith("/"):
            yield (*base, "upstream"), "a unix socket upstream is unix:/absolute/path.sock"
    elif parts.scheme not in UPSTREAM_SCHEMES or not parts.hostname:
        yield (*base, "upstream"), f"must be http://, https:// or unix:/path (got {r.upstream!r})"
    if r.rewrite is not None and not r.rewrite.startswith("/"):
        yield (*base, "rewrite"), "must be a path starting with '/' (it replaces the matched prefix)"
    if r.rewrite is not None and r.strip_prefix:
        yield (*base, "rewrite"), "give either strip_prefix or rewrite, not both"
    if r.max_body < 0:
        yield (*base, "max_body"), "must be 0 (no limit) or a number of bytes"
    if not r.tls.verify and r.tls.ca_file:
        yield (*base, "tls"), "ca_file is pointless with verify: false"
    for j, code in enumerate(r.allow.login_codes):
        if code not in codes:
            yield (*base, "allow", "login_codes", j), f"unknown login code '{code}'"
    if r.login is not None and r.login not in codes:
        yield (*base, "login"), f"unknown login code '{r.login}'"
    for role in r.allow.roles:
        if not any(role in t.roles.order for t in tenants.values()):
            yield (*base, "allow", "roles"), f"role '{role}' is not in any company's roles.order"
    for name, claim in r.headers.items():
        if not HEADER_NAME.match(name):
            yield (*base, "headers", name), "is not a valid HTTP header name"
        if claim not in HEADER_CLAIMS:
            yield (
                (*base, "headers", name),
                f"unknown claim '{claim}' (one of {', '.join(sorted(HEADER_CLAIMS))})",
            )
    for j, p in enumerate(r.public_paths):
        if not p.startswith("/"):
            yield (*base, "public_paths", j), "must start with '/'"
    if r.read_timeout <= 0 or r.connect_timeout <= 0 or r.idle_timeout <= 0:
        yield base, "timeouts must be positive (they are never disabled)"


@dataclass
class Sections:
    """The parts of a config that built, for checking even when other parts had type errors.

    ``codes`` are the login codes named in the YAML (including companies that failed to build), so a
    broken company does not also make every route that names it "unknown". ``routes`` keep their index.
    """

    base_dir: Path
    exists: Callable[[Path], bool]
    codes: set[str]
    server: schema.ServerConfig | None = None
    sessions: schema.SessionsConfig | None = None
    signing: schema.SigningConfig | None = None
    tenants: dict[str, schema.TenantConfig] = field(default_factory=dict)
    routes: list[tuple[int, schema.RouteConfig]] = field(default_factory=list)


def _check_server(server: schema.ServerConfig) -> Iterator[tuple[KeyPath, str]]:
    yield from _check_url(server.public_url, ("server", "public_url"), "public_url")
    if not 1 <= server.workers <= 64:
        yield ("server", "workers"), "must be between 1 and 64"
    for name in ("listen", "metrics_listen"):
        value = getattr(server, name)
        if value is not None and not LISTEN.match(value):
            yield ("server", name), f"must be host:port (got {value!r})"
    for i, cidr in enumerate(server.trusted_proxies):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            yield ("server", "trusted_proxies", i), f"not an IP network (CIDR) {cidr!r}"
    for i, alias in enumerate(server.login_aliases):
        if not ALIAS.match(alias) or alias.startswith("/.auth/"):
            yield ("server", "login_aliases", i), "must be a path ending in '{code}', e.g. /login/{code}"


def _check_sessions(sessions: schema.SessionsConfig, parts: Sections) -> Iterator[tuple[KeyPath, str]]:
    store = sessions.store
    if store != "memory" and urlsplit(store).scheme not in SESSION_STORE_SCHEMES:
        yield (
            ("sessions", "store"),
            "must be 'memory' or a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL",
        )
    for name in ("ca_file", "cert_file", "key_file"):
        tls_path = getattr(sessions.tls, name)
        if tls_path is not None and not parts.exists(parts.base_dir / tls_path):
            yield ("sessions", "tls", name), f"file {parts.base_dir / tls_path} does not exist"
    if sessions.idle_timeout <= 0 or sessions.lifetime <= 0:
        yield ("sessions",), "idle_timeout and lifetime must be positive"
    if not 0 < sessions.store_timeout <= schema.MAX_STORE_TIMEOUT:
        # Unbounded would let a hung Redis hold every request (and worker connection) indefinitely.
        yield (
            ("sessions", "store_timeout"),
            f"must be more than 0s and at most {int(schema.MAX_STORE_TIMEOUT)}s",
        )


def _check_signing(signing: schema.SigningConfig, parts: Sections) -> Iterator[tuple[KeyPath, str]]:
    if not signing.keys:
        yield ("signing", "keys"), "at least one signing key file is required (see `broker keygen`)"
    for i, key in enumerate(signing.keys):
        if not parts.exists(parts.base_dir / key):
            yield ("signing", "keys", i), f"key file {parts.base_dir / key} does not exist"
    if not 0 < signing.assertion_ttl <= schema.MAX_ASSERTION_TTL:
        yield ("signing", "assertion_ttl"), f"must be between 1s and {int(schema.MAX_ASSERTION_TTL)}s"
    if not HEADER_NAME.match(signing.assertion_header):
        yield ("signing", "assertion_header"), "is not a valid HTTP header name"


def _route_key(route: schema.RouteConfig) -> tuple[str, str]:
    # "/app" and "/app/" serve the same requests: one would silently shadow the other.
    return route.host.lower(), route.path.rstrip("/") or "/"


def check_sections(parts: Sections) -> Iterator[tuple[KeyPath, str]]:
    """Yield every semantic problem in the sections that built."""
    if parts.server is not None:
        yield from _check_server(parts.server)
    if parts.sessions is not None:
        yield from _check_sessions(parts.sessions, parts)
    if parts.signing is not None:
        yield from _check_signing(parts.signing, parts)
    if not parts.codes:
        yield ("tenants",), "at least one company is required"
    for code, tenant in parts.tenants.items():
        yield from _check_tenant(code, tenant)
        if tenant.certificate is not None:
            for name in ("key_file", "cert_file"):
                path = parts.base_dir / getattr(tenant.certificate, name)
                if not parts.exists(path):
                    yield ("tenants", code, "certificate", name), f"file {path} does not exist"
    seen: dict[tuple[str, str], int] = {}
    for i, route in parts.routes:
        yield from _check_route(i, route, parts.codes, parts.tenants)
        key = _route_key(route)
        if key in seen:
            yield ("routes", i), f"overlaps routes[{seen[key]}]: same host and path prefix"
        seen.setdefault(key, i)


def check_semantics(
    config: schema.BrokerConfig, base_dir: Path, file_exists: Callable[[Path], bool] | None = None
) -> Iterator[tuple[KeyPath, str]]:
    """Yield every semantic problem in a well-typed config."""
    yield from check_sections(
        Sections(
            base_dir=base_dir,
            exists=file_exists or Path.is_file,
            codes=set(config.tenants),
            server=config.server,
            sessions=config.sessions,
            signing=config.signing,
            tenants=dict(config.tenants),
            routes=list(enumerate(config.routes)),
        )
    )

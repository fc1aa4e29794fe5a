"""Checks that need more than types: formats, cross-references, and safety rules (fail closed).

Each check yields ``(key_path, message)``; the loader attaches file and line numbers. Problems refuse the
config; ``check_warnings`` yields what is allowed but risky (``check-config`` prints it, ``run`` logs it).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from broker.config import schema
from broker.path_folding import upstream_origin, widest_fold

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
MAX_CONNECTIONS_LIMIT = 1_000_000
# A configured header to strip: a header name, or a name prefix ending in "*".
STRIP_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'+.^_`|~-]+\*?$")
# Folded prefixes shorter than this would strip most headers ("X-*").
MIN_STRIP_PREFIX = 4
HEADER_CLAIMS = frozenset(
    {"sub", "tid", "oid", "name", "email", "preferred_username", "role", "roles", "groups", "login_code"}
)
# Claims a user (or their tenant's admin) can set to anything, unverified across tenants: as a user key they
# let a user of one company pass for a user of another (the "nOAuth" class). ``sub`` (tid:oid) is the key.
MUTABLE_CLAIMS = frozenset({"email", "preferred_username", "upn", "name", "unique_name"})


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
    if t.clock_skew > schema.MAX_CLOCK_SKEW:
        yield (
            (*base, "clock_skew"),
            f"at most {int(schema.MAX_CLOCK_SKEW // 60)}m: a larger skew admits long-expired ID tokens",
        )
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
    if r.path.startswith("/") and widest_fold(r.path) is None:
        yield (*base, "path"), "has a segment that servers read differently (only dots/spaces, look-alikes)"
    for j, origin in enumerate(r.websocket_origins):
        parts = urlsplit(origin)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username is not None
            or f"{parts.scheme}://{parts.netloc}" != origin
        ):
            yield (
                (*base, "websocket_origins", j),
                f"must be an origin like https://app.example.com (got {origin!r})",
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
    for name in ("header_timeout", "keepalive_timeout", "worker_timeout"):
        if getattr(server, name) <= 0:
            yield ("server", name), "must be positive (it is never disabled)"
    beat = schema.HEARTBEAT_INTERVAL
    if 0 < server.worker_timeout < 2 * beat:
        yield ("server", "worker_timeout"), f"must be at least {2 * beat:g}s (workers beat every {beat:g}s)"
    if not 1 <= server.max_connections <= MAX_CONNECTIONS_LIMIT:
        yield ("server", "max_connections"), f"must be between 1 and {MAX_CONNECTIONS_LIMIT}"
    if not server.login_rate_per_second > 0:
        yield ("server", "login_rate_per_second"), "must be positive"
    if server.login_rate_burst < 1:
        yield ("server", "login_rate_burst"), "must be at least 1"
    for name in ("listen", "metrics_listen"):
        value = getattr(server, name)
        if value is not None and not LISTEN.match(value):
            yield ("server", name), f"must be host:port (got {value!r})"
    for i, cidr in enumerate(server.trusted_proxies):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            yield ("server", "trusted_proxies", i), f"not an IP network (CIDR) {cidr!r}"
    for i, name in enumerate(server.strip_request_headers):
        folded = "".join(c for c in name.lower() if c.isascii() and c.isalnum())
        if not STRIP_HEADER.match(name) or not folded:
            yield ("server", "strip_request_headers", i), f"not a header name or 'Prefix-*' ({name!r})"
        elif name.endswith("*") and len(folded) < MIN_STRIP_PREFIX:
            yield (
                ("server", "strip_request_headers", i),
                f"prefix {name!r} is too short: it would strip most headers",
            )
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
    if sessions.max_pending_logins < 1:
        yield ("sessions", "max_pending_logins"), "must be at least 1"
    yield from _check_secret_keys(sessions)
    if not 0 < sessions.store_timeout <= schema.MAX_STORE_TIMEOUT:
        # Unbounded would let a hung Redis hold every request (and worker connection) indefinitely.
        yield (
            ("sessions", "store_timeout"),
            f"must be more than 0s and at most {int(schema.MAX_STORE_TIMEOUT)}s",
        )


def _check_workers_share_sessions(
    server: schema.ServerConfig, sessions: schema.SessionsConfig
) -> Iterator[tuple[KeyPath, str]]:
    # Each worker is its own process with its own memory store: a logout or revocation handled by one
    # worker leaves the ticket valid on the others (and a login on one is unknown to the rest).
    if server.workers > 1 and sessions.store == "memory":
        yield (
            ("server", "workers"),
            f"{server.workers} workers need a shared session store: with sessions.store 'memory' each worker "
            "keeps its own sessions, so a logout or revocation on one worker leaves the session valid on "
            "the others; use a redis:// store, or workers: 1",
        )


def decode_secret_key(text: str) -> bytes | None:
    """A ``sessions.secret_keys`` entry as bytes (base64 or base64url); None when it is not one of at least
    ``MIN_SESSION_SECRET_KEY_BYTES`` bytes."""
    cleaned = text.strip().replace("-", "+").replace("_", "/").rstrip("=")
    try:
        raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) >= schema.MIN_SESSION_SECRET_KEY_BYTES else None


def _check_secret_keys(sessions: schema.SessionsConfig) -> Iterator[tuple[KeyPath, str]]:
    how = "generate one with `openssl rand -base64 32`"
    if not sessions.secret_keys and sessions.store != "memory":
        # Fail closed: without a server secret, anyone who can write to Redis could forge sessions.
        yield ("sessions", "secret_keys"), f"required with a Redis store (a list of server keys; {how})"
    for i, text in enumerate(sessions.secret_keys):
        if decode_secret_key(text) is None:
            yield (
                ("sessions", "secret_keys", i),
                f"must be base64 of at least {schema.MIN_SESSION_SECRET_KEY_BYTES} random bytes ({how})",
            )
    if len(set(sessions.secret_keys)) != len(sessions.secret_keys):
        yield ("sessions", "secret_keys"), "lists the same key twice"


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


def _folded_route_key(route: schema.RouteConfig) -> tuple[str, str, str] | None:
    # Routes to one upstream whose prefixes fold together: the gateway would refuse (400) every path under
    # them as ambiguous, so say so at load time.
    path = widest_fold(route.path.rstrip("/") or "/") if route.path.startswith("/") else None
    return None if path is None else (route.host.lower(), upstream_origin(route.upstream), path)


def check_sections(parts: Sections) -> Iterator[tuple[KeyPath, str]]:
    """Yield every semantic problem in the sections that built."""
    if parts.server is not None:
        yield from _check_server(parts.server)
    if parts.sessions is not None:
        yield from _check_sessions(parts.sessions, parts)
    if parts.server is not None and parts.sessions is not None:
        yield from _check_workers_share_sessions(parts.server, parts.sessions)
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
    folded: dict[tuple[str, str, str], int] = {}
    for i, route in parts.routes:
        yield from _check_route(i, route, parts.codes, parts.tenants)
        key = _route_key(route)
        if key in seen:
            yield ("routes", i), f"overlaps routes[{seen[key]}]: same host and path prefix"
        seen.setdefault(key, i)
        fold_key = _folded_route_key(route)
        if fold_key is not None and fold_key in folded and seen[key] == i:
            yield (
                ("routes", i),
                f"differs from routes[{folded[fold_key]}] only by case or trailing dots/spaces, on the same "
                "upstream: an upstream that folds paths cannot tell them apart",
            )
        if fold_key is not None:
            folded.setdefault(fold_key, i)


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


def _tenants_reaching(route: schema.RouteConfig, tenants: dict[str, schema.TenantConfig]) -> int:
    """How many Entra tenants' users can sign in to this route (a multi-tenant company counts each)."""
    codes = route.allow.login_codes or list(tenants)
    count = 0
    for code in codes:
        tenant = tenants.get(code)
        if tenant is not None:
            multi = tenant.tenant_id.lower() in schema.MULTI_TENANT_IDS
            count += len(tenant.allowed_tenants) if multi else 1
    return count


def check_warnings(config: schema.BrokerConfig) -> Iterator[tuple[KeyPath, str]]:
    """Yield what is allowed but unsafe: mutable claims as the user header on a route shared by tenants."""
    for i, route in enumerate(config.routes):
        if route.auth == "public" or _tenants_reaching(route, config.tenants) < 2:
            continue
        for name, claim in route.headers.items():
            if claim in MUTABLE_CLAIMS:
                yield (
                    ("routes", i, "headers", name),
                    f"claim '{claim}' is mutable and not verified across tenants: on a route users of "
                    f"several tenants reach, a user of one can pass for a user of another (nOAuth); "
                    "identify users by 'sub' (tid:oid), or limit allow.login_codes to one company",
                )

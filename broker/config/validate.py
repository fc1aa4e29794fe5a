"""Rules across values: cross-references, either/or keys, files on disk, and safety rules (fail closed).

They run on what validated, even when other parts of the file did not: each section, company and route is
a ``Part`` whose ``unknown`` fields failed (their problem is reported already). A rule that reads an unknown
field is skipped, so one wrong value never hides the other problems nor causes false follow-on ones (an
unset ``${SECRET}`` does not also make the company "lack a credential").

Each check yields ``(key_path, message)``; the loader attaches file and line numbers. ``check_warnings``
yields what is allowed but risky (``check-config`` prints it, ``run`` logs it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Generic, TypeVar

from broker.config import formats, policy_schema, schema
from broker.config.formats import SECRET_KEY_HOW
from broker.config.formats import decode_secret_key as decode_secret_key
from broker.config.formats import is_loopback_http as is_loopback_http
from broker.grammar.claim_expression import parse_expression, references
from broker.grammar.path_folding import widest_fold

KeyPath = tuple[str | int, ...]
M = TypeVar("M", bound=schema.ConfigModel)

LOGIN_CODE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
# Claims a user (or their tenant's admin) can set to anything, unverified across tenants: as a user key they
# let a user of one company pass for a user of another (the "nOAuth" class). ``sub`` (tid:oid) is the key.
MUTABLE_CLAIMS = frozenset({"email", "preferred_username", "upn", "name", "unique_name"})


@dataclass(frozen=True)
class Part(Generic[M]):
    """A section, company or route as far as it validated: ``unknown`` names its fields that did not."""

    value: M
    unknown: frozenset[str] = frozenset()

    def knows(self, *names: str) -> bool:
        """Whether every field a rule reads holds a valid value."""
        return self.unknown.isdisjoint(names)


@dataclass
class Sections:
    """The parts of a config to check, each as far as it validated.

    ``codes`` are the login codes named in the YAML (including companies that failed to validate), so a
    broken company does not also make every route that names it "unknown"; None when ``tenants`` itself is
    not a mapping. ``routes`` keep their index.
    """

    base_dir: Path
    exists: Callable[[Path], bool]
    codes: set[str] | None
    server: Part[schema.ServerConfig] | None = None
    sessions: Part[schema.SessionsConfig] | None = None
    signing: Part[schema.SigningConfig] | None = None
    tenants: dict[str, Part[schema.TenantConfig]] = field(default_factory=dict)
    routes: list[tuple[int, Part[schema.RouteConfig]]] = field(default_factory=list)

    @cached_property
    def every_role(self) -> frozenset[str] | None:
        """The roles of every company's ``roles.order`` together; None unless every company (and so every
        role) is known. Gathered once: each route's role check reads it (500 routes x 100 companies)."""
        if self.codes is None or len(self.tenants) != len(self.codes):
            return None
        if not all(t.knows("roles") for t in self.tenants.values()):
            return None
        return frozenset(role for t in self.tenants.values() for role in t.value.roles.order)


def _check_tenant(
    code: str, part: Part[schema.TenantConfig], parts: Sections
) -> Iterator[tuple[KeyPath, str]]:
    base: KeyPath = ("tenants", code)
    t = part.value
    if not LOGIN_CODE.match(code):
        yield base, "login code must be lowercase letters, digits and '-' (at most 64)"
    if part.knows("tenant_id", "allowed_tenants"):
        multi_tenant = t.tenant_id.lower() in schema.MULTI_TENANT_IDS
        if multi_tenant and not t.allowed_tenants:
            # Fail closed: an 'organizations' app without an allow-list would admit every Entra tenant.
            yield (
                (*base, "allowed_tenants"),
                f"required with tenant_id '{t.tenant_id}': list the tenant GUIDs allowed",
            )
        if t.allowed_tenants and not multi_tenant:
            yield (*base, "allowed_tenants"), "only for multi-tenant apps (tenant_id: organizations)"
    if part.knows("client_secret", "certificate"):
        if not t.client_secret and t.certificate is None:
            yield base, "needs a credential: client_secret (or client_secret_file) or certificate"
        if t.client_secret and t.certificate is not None:
            yield base, "give either client_secret or certificate, not both"
    if part.knows("roles"):
        yield from _check_roles(base, t.roles)
    if part.knows("headers", "keep_claims"):
        for name, text in t.headers.items():
            for ref in references(parse_expression(text)):
                if ref.claim and not formats.claim_kept(ref.name, t.keep_claims):
                    yield (*base, "headers", name), f"claim '{ref.name}' is not in keep_claims"
    if part.knows("certificate") and t.certificate is not None:
        for name in ("key_file", "cert_file"):
            path = parts.base_dir / getattr(t.certificate, name)
            if not parts.exists(path):
                yield (*base, "certificate", name), f"file {path} does not exist"


def _check_roles(base: KeyPath, roles: schema.RolesConfig) -> Iterator[tuple[KeyPath, str]]:
    if roles.require_role and roles.default is not None:
        yield (
            (*base, "roles", "require_role"),
            "contradicts roles.default (a default role means nobody lacks one)",
        )
    if roles.default is not None and roles.default not in roles.order:
        yield (*base, "roles", "default"), f"'{roles.default}' is not in roles.order"
    for section in ("app_roles", "groups"):
        for source, role in getattr(roles, section).items():
            if role not in roles.order:
                yield (*base, "roles", section, source), f"'{role}' is not in roles.order"


def _check_route(i: int, part: Part[schema.RouteConfig], parts: Sections) -> Iterator[tuple[KeyPath, str]]:
    base: KeyPath = ("routes", i)
    r = part.value
    if part.knows("rewrite", "strip_prefix") and r.rewrite is not None and r.strip_prefix:
        yield (*base, "rewrite"), "give either strip_prefix or rewrite, not both"
    if part.knows("tls") and not r.tls.verify and r.tls.ca_file:
        yield (*base, "tls"), "ca_file is pointless with verify: false"
    codes = parts.codes
    if part.knows("allow") and codes is not None:
        for j, code in enumerate(r.allow.login_codes):
            if code not in codes:
                yield (*base, "allow", "login_codes", j), f"unknown login code '{code}'"
    if part.knows("login") and codes is not None and r.login is not None and r.login not in codes:
        yield (*base, "login"), f"unknown login code '{r.login}'"
    # Only when every company's roles are known: a broken company must not make its roles "unknown".
    every_role = parts.every_role
    if part.knows("allow") and every_role is not None:
        for role in r.allow.roles:
            if role not in every_role:
                yield (*base, "allow", "roles"), f"role '{role}' is not in any company's roles.order"
    if part.knows("policy", "path"):
        yield from _check_policy(base, r)
    if part.knows("headers", "policy", "assertion_claims", "allow") and codes is not None:
        yield from _check_claims_kept(base, r, parts)
    if part.knows("read_timeout", "connect_timeout", "idle_timeout") and (
        r.read_timeout <= 0 or r.connect_timeout <= 0 or r.idle_timeout <= 0
    ):
        yield base, "timeouts must be positive (they are never disabled)"


def _check_policy(base: KeyPath, route: schema.RouteConfig) -> Iterator[tuple[KeyPath, str]]:
    """Rule trees bounded in depth; ``path`` tests only under the route (others could never match)."""
    prefix = route.path.rstrip("/") or "/"
    for kind, rules in (("allow", route.policy.allow), ("deny", route.policy.deny)):
        for i, rule in enumerate(rules):
            at: KeyPath = (*base, "policy", kind, i)
            if policy_schema.depth(rule) > policy_schema.MAX_POLICY_DEPTH:
                yield at, f"nested deeper than {policy_schema.MAX_POLICY_DEPTH} levels"
            for path in policy_schema.paths_in(rule):
                if not (prefix == "/" or path == prefix or path.startswith(prefix + "/")):
                    yield at, f"path {path!r} is not under the route's path {route.path!r}"


def _kept_by(tenant: Part[schema.TenantConfig], claim: str) -> bool:
    return not tenant.knows("keep_claims") or formats.claim_kept(claim, tenant.value.keep_claims)


def claims_read(route: schema.RouteConfig) -> Iterator[tuple[KeyPath, str]]:
    """Every kept claim a route reads, with where: header expressions, policy claim tests, the assertion."""
    for name, text in route.headers.items():
        for ref in references(parse_expression(text)):
            if ref.claim:
                yield ("headers", name), ref.name
    for kind, rules in (("allow", route.policy.allow), ("deny", route.policy.deny)):
        for i, rule in enumerate(rules):
            for claim in policy_schema.claims_in(rule):
                if claim not in formats.HEADER_CLAIMS:
                    yield ("policy", kind, i), claim
    for i, claim in enumerate(route.assertion_claims):
        yield ("assertion_claims", i), claim


def _check_claims_kept(
    base: KeyPath, route: schema.RouteConfig, parts: Sections
) -> Iterator[tuple[KeyPath, str]]:
    """A claim no company reaching the route keeps is always missing: a typo, or a forgotten keep_claims."""
    read = list(claims_read(route))
    if not read:
        return  # most routes: nothing to look up in each company
    codes = route.allow.login_codes or list(parts.tenants)
    reaching = [parts.tenants[c] for c in codes if c in parts.tenants]
    if len(reaching) != len(codes):
        return  # a company failed to validate: its keep_claims are unknown
    for at, claim in read:
        if not any(_kept_by(t, claim) for t in reaching):
            yield (
                (*base, *at),
                f"claim '{claim}' is not kept by any company reaching this route: add it to keep_claims",
            )


def _check_workers_share_sessions(parts: Sections) -> Iterator[tuple[KeyPath, str]]:
    if parts.server is None or parts.sessions is None:
        return
    if not (parts.server.knows("workers") and parts.sessions.knows("store")):
        return
    server, sessions = parts.server.value, parts.sessions.value
    # Each worker is its own process with its own memory store: a logout or revocation handled by one
    # worker leaves the ticket valid on the others (and a login on one is unknown to the rest).
    if server.workers > 1 and sessions.store == "memory":
        yield (
            ("server", "workers"),
            f"{server.workers} workers need a shared session store: with sessions.store 'memory' each worker "
            "keeps its own sessions, so a logout or revocation on one worker leaves the session valid on "
            "the others; use a redis:// store, or workers: 1",
        )


def _check_sessions(part: Part[schema.SessionsConfig], parts: Sections) -> Iterator[tuple[KeyPath, str]]:
    sessions = part.value
    if part.knows("tls"):
        for name in ("ca_file", "cert_file", "key_file"):
            tls_path = getattr(sessions.tls, name)
            if tls_path is not None and not parts.exists(parts.base_dir / tls_path):
                yield ("sessions", "tls", name), f"file {parts.base_dir / tls_path} does not exist"
    if part.knows("idle_timeout", "lifetime") and (sessions.idle_timeout <= 0 or sessions.lifetime <= 0):
        yield ("sessions",), "idle_timeout and lifetime must be positive"
    if part.knows("secret_keys", "store") and not sessions.secret_keys and sessions.store != "memory":
        # Fail closed: without a server secret, anyone who can write to Redis could forge sessions.
        yield (
            ("sessions", "secret_keys"),
            f"required with a Redis store (a list of server keys; {SECRET_KEY_HOW})",
        )


def _check_signing(part: Part[schema.SigningConfig], parts: Sections) -> Iterator[tuple[KeyPath, str]]:
    if not part.knows("keys"):
        return
    for i, key in enumerate(part.value.keys):
        if not parts.exists(parts.base_dir / key):
            yield ("signing", "keys", i), f"key file {parts.base_dir / key} does not exist"


def _route_key(route: schema.RouteConfig) -> tuple[str, str]:
    # "/app" and "/app/" serve the same requests: one would silently shadow the other.
    return route.host.lower(), route.path.rstrip("/") or "/"


def _folded_route_key(route: schema.RouteConfig) -> tuple[str, str, str] | None:
    # Routes to one upstream whose prefixes fold together: the gateway would refuse (400) every path under
    # them as ambiguous, so say so at load time.
    path = widest_fold(route.path.rstrip("/") or "/") if route.path.startswith("/") else None
    return None if path is None else (route.host.lower(), route.upstream_key, path)


def _check_route_overlaps(parts: Sections) -> Iterator[tuple[KeyPath, str]]:
    seen: dict[tuple[str, str], int] = {}
    folded: dict[tuple[str, str, str], int] = {}
    for i, part in parts.routes:
        if not part.knows("host", "path", "upstream"):
            continue
        route = part.value
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


def check_sections(parts: Sections) -> Iterator[tuple[KeyPath, str]]:
    """Yield every problem across values, in the parts as far as they validated."""
    if parts.sessions is not None:
        yield from _check_sessions(parts.sessions, parts)
    yield from _check_workers_share_sessions(parts)
    if parts.signing is not None:
        yield from _check_signing(parts.signing, parts)
    if parts.codes is not None and not parts.codes:
        yield ("tenants",), "at least one company is required"
    for code, tenant in parts.tenants.items():
        yield from _check_tenant(code, tenant, parts)
    for i, route in parts.routes:
        yield from _check_route(i, route, parts)
    yield from _check_route_overlaps(parts)


def check_semantics(
    config: schema.BrokerConfig, base_dir: Path, file_exists: Callable[[Path], bool] | None = None
) -> Iterator[tuple[KeyPath, str]]:
    """Yield every problem across values in a config that validated whole."""
    yield from check_sections(
        Sections(
            base_dir=base_dir,
            exists=file_exists or Path.is_file,
            codes=set(config.tenants),
            server=Part(config.server),
            sessions=Part(config.sessions),
            signing=Part(config.signing),
            tenants={code: Part(tenant) for code, tenant in config.tenants.items()},
            routes=[(i, Part(route)) for i, route in enumerate(config.routes)],
        )
    )


def _tenants_of(codes: Iterable[str], tenants: dict[str, schema.TenantConfig]) -> int:
    """How many Entra tenants' users these companies sign in (a multi-tenant company counts each)."""
    count = 0
    for code in codes:
        tenant = tenants.get(code)
        if tenant is not None:
            multi = tenant.tenant_id.lower() in schema.MULTI_TENANT_IDS
            count += len(tenant.allowed_tenants) if multi else 1
    return count


def check_warnings(config: schema.BrokerConfig) -> Iterator[tuple[KeyPath, str]]:
    """Yield what is allowed but unsafe: mutable claims as the user header on a route shared by tenants."""
    # A route without login codes is open to every company: counted once, not once per such route.
    everyone = _tenants_of(config.tenants, config.tenants)
    for i, route in enumerate(config.routes):
        codes = route.allow.login_codes
        reaching = _tenants_of(codes, config.tenants) if codes else everyone
        if route.auth == "public" or reaching < 2:
            continue
        for name, text in route.headers.items():
            read = [ref.name for ref in references(parse_expression(text))]
            for claim in (c for c in read if c in MUTABLE_CLAIMS):
                yield (
                    ("routes", i, "headers", name),
                    f"claim '{claim}' is mutable and not verified across tenants: on a route users of "
                    f"several tenants reach, a user of one can pass for a user of another (nOAuth); "
                    "identify users by 'sub' (tid:oid), or limit allow.login_codes to one company",
                )

"""The typed shape of the broker's YAML: every key, its type and its default as a named constant.

The loader (``load.py``) builds these dataclasses generically from the type hints, so adding an option
means adding a field here, with a default constant and a docstring line in ``config/broker.example.yaml``.
Fields marked ``secret`` may instead be given as ``<name>_file`` (a path whose content is the value).
Fields annotated ``Duration`` accept ``90``, ``"90s"``, ``"15m"``, ``"8h"`` or ``"1d"`` and hold seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

DURATION = "duration"
Duration = Annotated[float, DURATION]
SECRET = {"secret": True}

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_SHUTDOWN_TIMEOUT = 30.0
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_SCOPES = ("openid", "profile", "email", "offline_access")
DEFAULT_COOKIE_NAME = "__Host-broker"
DEFAULT_IDLE_TIMEOUT = 8 * 3600.0
DEFAULT_LIFETIME = 24 * 3600.0
DEFAULT_REFRESH_BEFORE = 300.0
DEFAULT_SESSION_CACHE_TTL = 10.0
# The longest a user waits on the session store before a 503 (each operation, retries included).
DEFAULT_STORE_TIMEOUT = 2.0
MAX_STORE_TIMEOUT = 30.0
DEFAULT_ASSERTION_HEADER = "X-Broker-Assertion"
DEFAULT_ASSERTION_TTL = 60.0
MAX_ASSERTION_TTL = 300.0
DEFAULT_CLOCK_SKEW = 120.0
DEFAULT_IDP_TIMEOUT = 10.0
DEFAULT_UPSTREAM_CONNECT_TIMEOUT = 5.0
DEFAULT_UPSTREAM_READ_TIMEOUT = 60.0
DEFAULT_UPSTREAM_IDLE_TIMEOUT = 30.0
DEFAULT_MAX_BODY = 100 * 1024 * 1024
DEFAULT_GRAPH_URL = "https://graph.microsoft.com"
MULTI_TENANT_IDS = ("organizations", "common")

AuthMode = Literal["enforce", "optional", "public"]
ResponseMode = Literal["form_post", "query"]
SecretMethod = Literal["post", "basic"]
Prompt = Literal["login", "select_account", "consent", "none"]
GroupsOverage = Literal["deny", "graph"]
EntraLogout = Literal["offer", "always", "never"]


@dataclass(frozen=True)
class ServerConfig:
    """Where the gateway listens and the URL users reach it by."""

    public_url: str
    listen: str = DEFAULT_LISTEN
    login_aliases: list[str] = field(default_factory=list)
    trusted_proxies: list[str] = field(default_factory=list)
    workers: int = 1
    metrics_listen: str | None = None
    shutdown_timeout: Duration = DEFAULT_SHUTDOWN_TIMEOUT
    access_log: bool = True


@dataclass(frozen=True)
class RedisTlsConfig:
    """TLS files for ``rediss://`` stores: the CA bundle to trust, and a client certificate if required."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class SessionsConfig:
    """Server-side sessions: where they live and how long they last."""

    store: str = "memory"
    tls: RedisTlsConfig = field(default_factory=RedisTlsConfig)
    cookie_name: str = DEFAULT_COOKIE_NAME
    idle_timeout: Duration = DEFAULT_IDLE_TIMEOUT
    lifetime: Duration = DEFAULT_LIFETIME
    refresh_before: Duration = DEFAULT_REFRESH_BEFORE
    revalidate_every: Duration | None = None
    cache_ttl: Duration = DEFAULT_SESSION_CACHE_TTL
    store_timeout: Duration = DEFAULT_STORE_TIMEOUT


@dataclass(frozen=True)
class SigningConfig:
    """Keys that sign the identity assertion; the first signs, all are published."""

    keys: list[str]
    assertion_header: str = DEFAULT_ASSERTION_HEADER
    assertion_ttl: Duration = DEFAULT_ASSERTION_TTL


@dataclass(frozen=True)
class RolesConfig:
    """Map Entra app roles and groups to the company's ordered broker roles (most privileged last)."""

    order: list[str] = field(default_factory=list)
    default: str | None = None
    require_role: bool = False
    app_roles: dict[str, str] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CertificateConfig:
    """A certificate credential (``private_key_jwt``): the private key and the certificate given to Entra."""

    key_file: str
    cert_file: str


@dataclass(frozen=True)
class TenantConfig:
    """One customer company, keyed in YAML by its login code."""

    display_name: str
    tenant_id: str
    client_id: str
    client_secret: str | None = field(default=None, metadata=SECRET)
    client_secret_method: SecretMethod = "post"
    certificate: CertificateConfig | None = None
    authority: str = DEFAULT_AUTHORITY
    allowed_tenants: list[str] = field(default_factory=list)
    app_specific_keys: bool = False
    note: str = ""
    logo_url: str | None = None
    domain_hint: str | None = None
    email_domains: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=lambda: list(DEFAULT_SCOPES))
    response_mode: ResponseMode = "form_post"
    prompt: Prompt | None = None
    groups_overage: GroupsOverage = "deny"
    graph_url: str = DEFAULT_GRAPH_URL
    entra_logout: EntraLogout = "offer"
    auto_redirect: bool = False
    listed: bool = False
    clock_skew: Duration = DEFAULT_CLOCK_SKEW
    roles: RolesConfig = field(default_factory=RolesConfig)


@dataclass(frozen=True)
class AllowConfig:
    """Who may use a route; an empty list means "no restriction on this dimension"."""

    login_codes: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class UpstreamTlsConfig:
    """How to trust an ``https://`` upstream: a CA bundle, or (explicitly) no verification."""

    ca_file: str | None = None
    verify: bool = True
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class RouteConfig:
    """One protected (or public) upstream, matched by host and path prefix."""

    host: str
    upstream: str
    path: str = "/"
    auth: AuthMode = "enforce"
    login: str | None = None
    allow: AllowConfig = field(default_factory=AllowConfig)
    public_paths: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    audience: str | None = None
    strip_prefix: bool = False
    rewrite: str | None = None
    preserve_host: bool = False
    websockets: bool = True
    tls: UpstreamTlsConfig = field(default_factory=UpstreamTlsConfig)
    connect_timeout: Duration = DEFAULT_UPSTREAM_CONNECT_TIMEOUT
    read_timeout: Duration = DEFAULT_UPSTREAM_READ_TIMEOUT
    idle_timeout: Duration = DEFAULT_UPSTREAM_IDLE_TIMEOUT
    max_body: int = DEFAULT_MAX_BODY


@dataclass(frozen=True)
class BrokerConfig:
    """The whole configuration file."""

    server: ServerConfig
    signing: SigningConfig
    tenants: dict[str, TenantConfig]
    routes: list[RouteConfig]
    sessions: SessionsConfig = field(default_factory=SessionsConfig)

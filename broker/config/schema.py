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
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_KEEPALIVE_TIMEOUT = 75.0
DEFAULT_MAX_CONNECTIONS = 4096
DEFAULT_WORKER_TIMEOUT = 30.0
HEARTBEAT_INTERVAL = 1.0  # seconds between two heartbeats of a worker to its supervisor
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_SCOPES = ("openid", "profile", "email", "offline_access")
DEFAULT_COOKIE_NAME = "__Host-broker"
DEFAULT_IDLE_TIMEOUT = 8 * 3600.0
DEFAULT_LIFETIME = 24 * 3600.0
DEFAULT_REFRESH_BEFORE = 300.0
DEFAULT_SESSION_CACHE_TTL = 10.0
DEFAULT_SESSION_SECRET_KEYS: tuple[str, ...] = ()  # none: a random per-process key (memory store only)
MIN_SESSION_SECRET_KEY_BYTES = 32
# The longest a user waits on the session store before a 503 (each operation, retries included).
DEFAULT_STORE_TIMEOUT = 2.0
MAX_STORE_TIMEOUT = 30.0
DEFAULT_ASSERTION_HEADER = "X-Broker-Assertion"
DEFAULT_ASSERTION_TTL = 60.0
MAX_ASSERTION_TTL = 300.0
DEFAULT_CLOCK_SKEW = 120.0
# Tolerance on exp/nbf/iat: a few minutes of clock drift, never days (a 30d skew admits month-old tokens).
MAX_CLOCK_SKEW = 300.0
DEFAULT_IDP_TIMEOUT = 10.0
DEFAULT_UPSTREAM_CONNECT_TIMEOUT = 5.0
DEFAULT_UPSTREAM_READ_TIMEOUT = 60.0
DEFAULT_UPSTREAM_IDLE_TIMEOUT = 30.0
DEFAULT_MAX_BODY = 100 * 1024 * 1024
DEFAULT_GRAPH_URL = "https://graph.microsoft.com"
# How an upstream reads paths. Off by default: the gateway then still refuses (400) any path that a folding
# upstream would read as another route's path on the same upstream (see ``broker/routing.py``).
DEFAULT_UPSTREAM_CASE_INSENSITIVE = False
DEFAULT_UPSTREAM_WINDOWS_PATHS = False
# Extra request headers never passed upstream (the built-in identity deny-list always applies).
DEFAULT_STRIP_REQUEST_HEADERS: tuple[str, ...] = ()
# Extra origins a WebSocket upgrade may come from (the route's own origin is always allowed).
DEFAULT_WEBSOCKET_ORIGINS: tuple[str, ...] = ()
# Login starts per client address (token bucket, per process): sustained rate and burst. 30 at once covers an
# office behind one NAT arriving at 9:00; 10/s sustained is 600 sign-ins a minute from one address, far more
# than any real office, while one flooding address stays far below the cap on outstanding states.
DEFAULT_LOGIN_RATE_PER_SECOND = 10.0
DEFAULT_LOGIN_RATE_BURST = 30
# Outstanding login states per store (each about 0.7-1 KB for 10 minutes): about 100 MB at most.
DEFAULT_MAX_PENDING_LOGINS = 100_000
MULTI_TENANT_IDS = ("organizations", "common")

AuthMode = Literal["enforce", "optional", "public"]
ResponseMode = Literal["form_post", "query"]
SecretMethod = Literal["post", "basic"]
Prompt = Literal["login", "select_account", "consent", "none"]
GroupsOverage = Literal["deny", "graph"]
EntraLogout = Literal["offer", "always", "never"]
WithoutRefreshToken = Literal["id_token", "session"]

# "id_token": a session without a refresh token ends when its ID token expires (nothing can re-validate the
# user, so revocation at Entra is seen within the token's lifetime, about an hour). "session": it lasts
# for the broker session's own idle_timeout/lifetime (as mod_auth_openidc does); opt-in, because a user
# disabled at Entra keeps access until then.
DEFAULT_WITHOUT_REFRESH_TOKEN: WithoutRefreshToken = "id_token"


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
    header_timeout: Duration = DEFAULT_HEADER_TIMEOUT
    keepalive_timeout: Duration = DEFAULT_KEEPALIVE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    worker_timeout: Duration = DEFAULT_WORKER_TIMEOUT
    strip_request_headers: list[str] = field(default_factory=lambda: list(DEFAULT_STRIP_REQUEST_HEADERS))
    login_rate_per_second: float = DEFAULT_LOGIN_RATE_PER_SECOND
    login_rate_burst: int = DEFAULT_LOGIN_RATE_BURST


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
    max_pending_logins: int = DEFAULT_MAX_PENDING_LOGINS
    without_refresh_token: WithoutRefreshToken = DEFAULT_WITHOUT_REFRESH_TOKEN
    # Server keys that take part in sealing every session and login-state record and key the index names:
    # base64 of >= 32 random bytes each, the first seals, all open (rotation). Required with Redis.
    secret_keys: list[str] = field(default_factory=lambda: list(DEFAULT_SESSION_SECRET_KEYS), metadata=SECRET)
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
class UpstreamPathsConfig:
    """How the route's upstream app reads paths, so the gateway matches routes the same way.

    It describes the upstream: declared on one route, it holds for every route with the same upstream origin.
    """

    case_insensitive: bool = DEFAULT_UPSTREAM_CASE_INSENSITIVE  # IIS, ASP.NET: /ADMIN/ is /admin/
    windows: bool = DEFAULT_UPSTREAM_WINDOWS_PATHS  # trailing dots and spaces dropped: /admin./ is /admin/


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
    upstream_paths: UpstreamPathsConfig = field(default_factory=UpstreamPathsConfig)
    strip_prefix: bool = False
    rewrite: str | None = None
    preserve_host: bool = False
    websockets: bool = True
    websocket_origins: list[str] = field(default_factory=lambda: list(DEFAULT_WEBSOCKET_ORIGINS))
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

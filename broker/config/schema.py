"""The typed shape of the broker's YAML: every key, its type and its default as a named constant.

Frozen pydantic models, validated in one pass that collects every problem (``load.py`` adds file:line).
Adding an option means adding a field here, with a default constant and a line in
``config/broker.example.yaml``. Fields marked ``SECRET`` may instead be given as ``<name>_file`` (a path
whose content is the value). ``Duration`` fields accept ``90``, ``"90s"``, ``"15m"``, ``"8h"`` or ``"1d"``
and hold seconds. Single-value rules (formats, bounds) are declared on the fields (``formats.py``); rules
across values are in ``validate.py``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from broker.config import formats
from broker.config.fields import Bool, Duration, Float, Int, SecretText, Text
from broker.config.formats import GUID, LISTEN, MIN_SESSION_SECRET_KEY_BYTES, MULTI_TENANT_IDS
from broker.config.model import SECRET, ConfigModel
from broker.config.policy_schema import PolicyConfig
from broker.grammar.path_folding import upstream_origin

__all__ = [
    "DURATION",
    "ConfigModel",
    "Duration",
    "MIN_SESSION_SECRET_KEY_BYTES",
    "MULTI_TENANT_IDS",
    "PolicyConfig",
    "SECRET",
]

DURATION = "duration"  # the old marker of duration fields, kept for readers: ``Duration`` holds seconds


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
# Tracing is off unless asked for: when off no span object is ever made (the hot path pays nothing).
DEFAULT_TRACING_ENABLED = False
DEFAULT_TRACING_OTLP_ENDPOINT: str | None = (
    None  # None: the OTEL_EXPORTER_OTLP_* variables, else localhost:4318
)
DEFAULT_TRACING_SAMPLE_RATIO = 1.0
DEFAULT_TRACING_SERVICE_NAME = "entra-broker"
DEFAULT_REFRESH_BEFORE = 300.0
DEFAULT_SESSION_CACHE_TTL = 10.0
DEFAULT_SESSION_SECRET_KEYS: tuple[str, ...] = ()  # none: a random per-process key (memory store only)
# The longest a user waits on the session store before a 503 (each operation, retries included).
DEFAULT_STORE_TIMEOUT = 2.0
MAX_STORE_TIMEOUT = 30.0
DEFAULT_ASSERTION_HEADER = "X-Broker-Assertion"
DEFAULT_ASSERTION_TTL = 60.0
MAX_ASSERTION_TTL = 300.0
DEFAULT_CLOCK_SKEW = 120.0
# Tolerance on exp/nbf/iat: a few minutes of clock drift, never days (a 30d skew admits month-old tokens).
MAX_CLOCK_SKEW = 300.0
DEFAULT_UPSTREAM_CONNECT_TIMEOUT = 5.0
DEFAULT_UPSTREAM_READ_TIMEOUT = 60.0
DEFAULT_UPSTREAM_IDLE_TIMEOUT = 30.0
DEFAULT_MAX_BODY = 100 * 1024 * 1024
DEFAULT_GRAPH_URL = "https://graph.microsoft.com"
DEFAULT_ACCENT_COLOR: str | None = None  # none: the pages' own blue
DEFAULT_LOGO_URL: str | None = None  # none: no logo on the company's page
# How an upstream reads paths. Off by default: the gateway then still refuses (400) any path that a folding
# upstream would read as another route's path on the same upstream (see ``broker/proxy/routing.py``).
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
# ID-token claims a session keeps beyond the broker's own fields: none unless the company asks (each costs
# room in every session record).
DEFAULT_KEEP_CLAIMS: tuple[str, ...] = ()
# Identity header values that are not printable ASCII: RFC 8187 (UTF-8''...) or raw UTF-8 (control
# characters are never sent raw either way); longer values are not sent (never cut: that changes who).
DEFAULT_HEADER_NON_ASCII: HeaderNonAscii = "rfc8187"
DEFAULT_HEADER_MAX_LENGTH = 1024
MAX_HEADER_LENGTH = 8192

# Forward-auth without a session: "status" answers 401 naming the login URL (nginx redirects with its
# error_page); "redirect" answers a browser 302 to the login (Traefik, Caddy pass it through). API clients
# always get 401. The verify URL's ``?login=`` overrides it per ingress.
VerifyLogin = Literal["status", "redirect"]
DEFAULT_VERIFY_LOGIN: VerifyLogin = "status"

DEFAULT_API_FORWARD_TOKEN = False

AuthMode = Literal["enforce", "optional", "public"]
ResponseMode = Literal["form_post", "query"]
SecretMethod = Literal["post", "basic"]
Prompt = Literal["login", "select_account", "consent", "none"]
GroupsOverage = Literal["deny", "graph"]
EntraLogout = Literal["offer", "always", "never"]
WithoutRefreshToken = Literal["id_token", "session"]
HeaderNonAscii = Literal["rfc8187", "utf8"]

# "id_token": a session without a refresh token ends when its ID token expires (nothing can re-validate the
# user, so revocation at Entra is seen within the token's lifetime, about an hour). "session": it lasts
# for the broker session's own idle_timeout/lifetime (as mod_auth_openidc does); opt-in, because a user
# disabled at Entra keeps access until then.
DEFAULT_WITHOUT_REFRESH_TOKEN: WithoutRefreshToken = "id_token"


MAX_CONNECTIONS_LIMIT = 1_000_000
NEVER_DISABLED = "must be positive (it is never disabled)"
STORE_TIMEOUT_RANGE = f"must be more than 0s and at most {int(MAX_STORE_TIMEOUT)}s"
ASSERTION_TTL_RANGE = f"must be between 1s and {int(MAX_ASSERTION_TTL)}s"

# Field types with their single-value rules (each reports at its own key, whatever else is wrong).
Listen = Annotated[Text, AfterValidator(formats.matches(LISTEN, "must be host:port (got {value!r})"))]
PositiveDuration = Annotated[Duration, AfterValidator(formats.positive(NEVER_DISABLED))]
StoreTimeout = Annotated[
    Duration,
    AfterValidator(formats.positive(STORE_TIMEOUT_RANGE)),
    AfterValidator(formats.at_most(MAX_STORE_TIMEOUT, STORE_TIMEOUT_RANGE)),
]
AssertionTtl = Annotated[
    Duration,
    AfterValidator(formats.positive(ASSERTION_TTL_RANGE)),
    AfterValidator(formats.at_most(MAX_ASSERTION_TTL, ASSERTION_TTL_RANGE)),
]
ClockSkew = Annotated[
    Duration,
    AfterValidator(
        formats.at_most(
            MAX_CLOCK_SKEW,
            f"at most {int(MAX_CLOCK_SKEW // 60)}m: a larger skew admits long-expired ID tokens",
        )
    ),
]
SessionKey = Annotated[SecretText, AfterValidator(formats.secret_key)]
HeaderName = Annotated[Text, AfterValidator(formats.header_name)]
TenantGuid = Annotated[Text, AfterValidator(formats.matches(GUID, "must be a tenant GUID (got {value!r})"))]
ClientId = Annotated[
    Text, AfterValidator(formats.matches(GUID, "must be the application (client) ID GUID (got {value!r})"))
]
AccentColor = Annotated[Text, AfterValidator(formats.css_hex_color)]
LogoUrl = Annotated[Text, AfterValidator(formats.logo_url)]
PathStartingWithSlash = Annotated[Text, AfterValidator(formats.starts_with_slash("must start with '/'"))]
HeaderExpression = Annotated[Text, AfterValidator(formats.header_expression)]
HeaderMaxLength = Annotated[
    Int, AfterValidator(formats.between(16, MAX_HEADER_LENGTH, f"must be between 16 and {MAX_HEADER_LENGTH}"))
]
Rewrite = Annotated[
    Text,
    AfterValidator(
        formats.starts_with_slash("must be a path starting with '/' (it replaces the matched prefix)")
    ),
]


class ServerConfig(ConfigModel):
    """Where the gateway listens and the URL users reach it by."""

    public_url: Annotated[Text, AfterValidator(formats.url("public_url"))]
    listen: Listen = DEFAULT_LISTEN
    login_aliases: list[Annotated[Text, AfterValidator(formats.login_alias)]] = Field(default_factory=list)
    trusted_proxies: list[Annotated[Text, AfterValidator(formats.cidr)]] = Field(default_factory=list)
    workers: Annotated[Int, AfterValidator(formats.between(1, 64, "must be between 1 and 64"))] = 1
    metrics_listen: Listen | None = None
    shutdown_timeout: Duration = DEFAULT_SHUTDOWN_TIMEOUT
    access_log: Bool = True
    header_timeout: PositiveDuration = DEFAULT_HEADER_TIMEOUT
    keepalive_timeout: PositiveDuration = DEFAULT_KEEPALIVE_TIMEOUT
    max_connections: Annotated[
        Int,
        AfterValidator(
            formats.between(1, MAX_CONNECTIONS_LIMIT, f"must be between 1 and {MAX_CONNECTIONS_LIMIT}")
        ),
    ] = DEFAULT_MAX_CONNECTIONS
    worker_timeout: Annotated[Duration, AfterValidator(formats.worker_timeout(HEARTBEAT_INTERVAL))] = (
        DEFAULT_WORKER_TIMEOUT
    )
    strip_request_headers: list[Annotated[Text, AfterValidator(formats.strip_header)]] = Field(
        default_factory=lambda: list(DEFAULT_STRIP_REQUEST_HEADERS)
    )
    login_rate_per_second: Annotated[Float, AfterValidator(formats.positive("must be positive"))] = (
        DEFAULT_LOGIN_RATE_PER_SECOND
    )
    login_rate_burst: Annotated[Int, AfterValidator(formats.at_least(1, "must be at least 1"))] = (
        DEFAULT_LOGIN_RATE_BURST
    )


class RedisTlsConfig(ConfigModel):
    """TLS files for ``rediss://`` stores: the CA bundle to trust, and a client certificate if required."""

    ca_file: Text | None = None
    cert_file: Text | None = None
    key_file: Text | None = None


class SessionsConfig(ConfigModel):
    """Server-side sessions: where they live and how long they last."""

    store: Annotated[Text, AfterValidator(formats.session_store)] = "memory"
    tls: RedisTlsConfig = Field(default_factory=RedisTlsConfig)
    cookie_name: Text = DEFAULT_COOKIE_NAME
    idle_timeout: Duration = DEFAULT_IDLE_TIMEOUT
    lifetime: Duration = DEFAULT_LIFETIME
    refresh_before: Duration = DEFAULT_REFRESH_BEFORE
    revalidate_every: Duration | None = None
    cache_ttl: Duration = DEFAULT_SESSION_CACHE_TTL
    max_pending_logins: Annotated[Int, AfterValidator(formats.at_least(1, "must be at least 1"))] = (
        DEFAULT_MAX_PENDING_LOGINS
    )
    without_refresh_token: WithoutRefreshToken = DEFAULT_WITHOUT_REFRESH_TOKEN
    # Server keys that take part in sealing every session and login-state record and key the index names:
    # base64 of >= 32 random bytes each, the first seals, all open (rotation). Required with Redis.
    secret_keys: Annotated[
        list[SessionKey], AfterValidator(formats.no_repeats("lists the same key twice"))
    ] = Field(default_factory=lambda: list(DEFAULT_SESSION_SECRET_KEYS), json_schema_extra=SECRET)
    store_timeout: StoreTimeout = DEFAULT_STORE_TIMEOUT


class SigningConfig(ConfigModel):
    """Keys that sign the identity assertion; the first signs, all are published."""

    keys: Annotated[
        list[Text],
        AfterValidator(formats.not_empty("at least one signing key file is required (see `broker keygen`)")),
    ]
    assertion_header: HeaderName = DEFAULT_ASSERTION_HEADER
    assertion_ttl: AssertionTtl = DEFAULT_ASSERTION_TTL


class RolesConfig(ConfigModel):
    """Map Entra app roles and groups to the company's ordered broker roles (most privileged last)."""

    order: list[Text] = Field(default_factory=list)
    default: Text | None = None
    require_role: Bool = False
    app_roles: dict[str, Text] = Field(default_factory=dict)
    groups: dict[str, Text] = Field(default_factory=dict)


class CertificateConfig(ConfigModel):
    """A certificate credential (``private_key_jwt``): the private key and the certificate given to Entra."""

    key_file: Text
    cert_file: Text


class TenantConfig(ConfigModel):
    """One customer company, keyed in YAML by its login code."""

    display_name: Text
    tenant_id: Annotated[Text, AfterValidator(formats.tenant_id)]
    client_id: ClientId
    client_secret: SecretText | None = Field(default=None, json_schema_extra=SECRET)
    client_secret_method: SecretMethod = "post"
    certificate: CertificateConfig | None = None
    authority: Annotated[Text, AfterValidator(formats.url("authority"))] = DEFAULT_AUTHORITY
    allowed_tenants: list[TenantGuid] = Field(default_factory=list)
    app_specific_keys: Bool = False
    note: Text = ""
    logo_url: LogoUrl | None = DEFAULT_LOGO_URL
    accent_color: AccentColor | None = DEFAULT_ACCENT_COLOR
    domain_hint: Text | None = None
    email_domains: list[Text] = Field(default_factory=list)
    scopes: Annotated[list[Text], AfterValidator(formats.has_openid)] = Field(
        default_factory=lambda: list(DEFAULT_SCOPES)
    )
    response_mode: ResponseMode = "form_post"
    prompt: Prompt | None = None
    groups_overage: GroupsOverage = "deny"
    graph_url: Annotated[Text, AfterValidator(formats.url("graph_url"))] = DEFAULT_GRAPH_URL
    entra_logout: EntraLogout = "offer"
    auto_redirect: Bool = False
    listed: Bool = False
    clock_skew: ClockSkew = DEFAULT_CLOCK_SKEW
    roles: RolesConfig = Field(default_factory=RolesConfig)
    # ID-token claims the session keeps for header expressions and policy rules (``extn.*`` by prefix).
    # Header expressions every route sends for this company's users (a route's own header of the same name
    # replaces it): docs/identity-mapping.md.
    headers: dict[HeaderName, HeaderExpression] = Field(default_factory=dict)
    keep_claims: list[Annotated[Text, AfterValidator(formats.claim_name)]] = Field(
        default_factory=lambda: list(DEFAULT_KEEP_CLAIMS)
    )


class AllowConfig(ConfigModel):
    """Who may use a route; an empty list means "no restriction on this dimension"."""

    login_codes: list[Text] = Field(default_factory=list)
    roles: list[Text] = Field(default_factory=list)
    groups: list[Text] = Field(default_factory=list)
    users: list[Text] = Field(default_factory=list)


class UpstreamTlsConfig(ConfigModel):
    """How to trust an ``https://`` upstream: a CA bundle, or (explicitly) no verification."""

    ca_file: Text | None = None
    verify: Bool = True
    cert_file: Text | None = None
    key_file: Text | None = None


class UpstreamPathsConfig(ConfigModel):
    """How the route's upstream app reads paths, so the gateway matches routes the same way.

    It describes the upstream: declared on one route, it holds for every route with the same upstream origin.
    """

    case_insensitive: Bool = DEFAULT_UPSTREAM_CASE_INSENSITIVE  # IIS, ASP.NET: /ADMIN/ is /admin/
    windows: Bool = DEFAULT_UPSTREAM_WINDOWS_PATHS  # trailing dots and spaces dropped: /admin./ is /admin/


class ApiConfig(ConfigModel):
    """What a route accepts as ``Authorization: Bearer`` (Entra access tokens for this API)."""

    # The token's ``aud`` must be one of these: the App ID URI (v1 tokens) and/or the app ID (v2 tokens).
    audiences: Annotated[
        list[Text], AfterValidator(formats.not_empty("at least one audience (App ID URI or app ID)"))
    ]
    # Delegated tokens (a user, ``scp``) need one of these; none listed: delegated tokens are refused.
    scopes: list[Text] = Field(default_factory=list)
    # App-only tokens (``idtyp=app``, ``roles``) need one of these; none listed: app-only tokens are refused.
    app_roles: list[Text] = Field(default_factory=list)
    # The bearer token itself goes upstream only when asked (the signed assertion carries the identity).
    forward_token: Bool = DEFAULT_API_FORWARD_TOKEN


class RouteConfig(ConfigModel):
    """One protected (or public) upstream, matched by host and path prefix."""

    host: Text
    # None: an auth-only route, answered by /.auth/verify for an ingress that serves the app itself.
    upstream: Annotated[Text, AfterValidator(formats.upstream)] | None = None
    path: Annotated[Text, AfterValidator(formats.route_path)] = "/"
    auth: AuthMode = "enforce"
    login: Text | None = None
    allow: AllowConfig = Field(default_factory=AllowConfig)
    # Rule trees on top of the short form above (both must admit): see docs/policy.md.
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    public_paths: list[PathStartingWithSlash] = Field(default_factory=list)
    headers: dict[HeaderName, HeaderExpression] = Field(default_factory=dict)
    header_non_ascii: HeaderNonAscii = DEFAULT_HEADER_NON_ASCII
    header_max_length: Annotated[
        Int,
        AfterValidator(formats.between(16, MAX_HEADER_LENGTH, f"must be between 16 and {MAX_HEADER_LENGTH}")),
    ] = DEFAULT_HEADER_MAX_LENGTH
    # Kept claims the signed assertion carries too, under their own names (never the reserved ones).
    assertion_claims: list[Annotated[Text, AfterValidator(formats.assertion_claim)]] = Field(
        default_factory=list
    )
    audience: Text | None = None
    upstream_paths: UpstreamPathsConfig = Field(default_factory=UpstreamPathsConfig)
    strip_prefix: Bool = False
    rewrite: Rewrite | None = None
    preserve_host: Bool = False
    websockets: Bool = True
    websocket_origins: list[Annotated[Text, AfterValidator(formats.websocket_origin)]] = Field(
        default_factory=lambda: list(DEFAULT_WEBSOCKET_ORIGINS)
    )
    tls: UpstreamTlsConfig = Field(default_factory=UpstreamTlsConfig)
    connect_timeout: Duration = DEFAULT_UPSTREAM_CONNECT_TIMEOUT
    read_timeout: Duration = DEFAULT_UPSTREAM_READ_TIMEOUT
    idle_timeout: Duration = DEFAULT_UPSTREAM_IDLE_TIMEOUT
    max_body: Annotated[
        Int, AfterValidator(formats.at_least(0, "must be 0 (no limit) or a number of bytes"))
    ] = DEFAULT_MAX_BODY
    verify_login: VerifyLogin = DEFAULT_VERIFY_LOGIN
    api: ApiConfig | None = None

    @property
    def upstream_key(self) -> str:
        """The upstream's origin (its routes fold paths alike); ``""`` for auth-only routes."""
        return upstream_origin(self.upstream) if self.upstream else ""


class TracingConfig(ConfigModel):
    """OpenTelemetry traces, exported over OTLP/HTTP: one span per request and its stages."""

    enabled: Bool = DEFAULT_TRACING_ENABLED
    otlp_endpoint: Annotated[Text, AfterValidator(formats.url("tracing.otlp_endpoint"))] | None = (
        DEFAULT_TRACING_OTLP_ENDPOINT
    )
    sample_ratio: Annotated[Float, AfterValidator(formats.between(0.0, 1.0, "must be between 0 and 1"))] = (
        DEFAULT_TRACING_SAMPLE_RATIO
    )
    service_name: Text = DEFAULT_TRACING_SERVICE_NAME


class BrokerConfig(ConfigModel):
    """The whole configuration file."""

    server: ServerConfig
    signing: SigningConfig
    tenants: dict[str, TenantConfig]
    routes: list[RouteConfig]
    sessions: SessionsConfig = Field(default_factory=SessionsConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)

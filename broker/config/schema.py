"""The typed shape of the broker's YAML: every key, its type and its default as a named constant.

Frozen pydantic models, validated in one pass that collects every problem (``load.py`` adds file:line).
Adding an option means adding a field here, with a default constant and a line in
``config/broker.example.yaml``. Fields marked ``SECRET`` may instead be given as ``<name>_file`` (a path
whose content is the value). ``Duration`` fields accept ``90``, ``"90s"``, ``"15m"``, ``"8h"`` or ``"1d"``
and hold seconds. Single-value rules (formats, bounds) are declared on the fields (``formats.py``); rules
across values are in ``validate.py``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from broker.config import formats
from broker.config.fields import Bool, Duration, Float, Int, SecretText, Text, secret_file_keys
from broker.config.formats import GUID, LISTEN, MIN_SESSION_SECRET_KEY_BYTES, MULTI_TENANT_IDS

__all__ = ["DURATION", "Duration", "MIN_SESSION_SECRET_KEY_BYTES", "MULTI_TENANT_IDS", "SECRET"]

DURATION = "duration"  # the old marker of duration fields, kept for readers: ``Duration`` holds seconds
SECRET: JsonDict = {"secret": True}  # a field's ``json_schema_extra``: it may be given as ``<name>_file``


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
Rewrite = Annotated[
    Text,
    AfterValidator(
        formats.starts_with_slash("must be a path starting with '/' (it replaces the matched prefix)")
    ),
]


class ConfigModel(BaseModel):
    """A config section: frozen, and every key not in the schema is an error (typos never pass silently)."""

    # defer_build: the validators are built when first used (loading builds BrokerConfig's, nested ones
    # inline), not at import; this keeps the gateway's start-up within a few percent of the old loader's.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    secret_fields: ClassVar[tuple[str, ...]] = ()
    secret_lists: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        secrets = [name for name, info in cls.model_fields.items() if info.json_schema_extra == SECRET]
        cls.secret_fields = tuple(secrets)
        cls.secret_lists = frozenset(n for n in secrets if get_origin(cls.model_fields[n].annotation) is list)

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        """``<name>_file`` of a secret field: its value is read from that file (see ``fields.SecretFile``)."""
        if not cls.secret_fields:
            return data
        return secret_file_keys(data, cls.secret_fields, cls.secret_lists)


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


class RouteConfig(ConfigModel):
    """One protected (or public) upstream, matched by host and path prefix."""

    host: Text
    upstream: Annotated[Text, AfterValidator(formats.upstream)]
    path: Annotated[Text, AfterValidator(formats.route_path)] = "/"
    auth: AuthMode = "enforce"
    login: Text | None = None
    allow: AllowConfig = Field(default_factory=AllowConfig)
    public_paths: list[PathStartingWithSlash] = Field(default_factory=list)
    headers: dict[HeaderName, Annotated[Text, AfterValidator(formats.header_claim)]] = Field(
        default_factory=dict
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


class BrokerConfig(ConfigModel):
    """The whole configuration file."""

    server: ServerConfig
    signing: SigningConfig
    tenants: dict[str, TenantConfig]
    routes: list[RouteConfig]
    sessions: SessionsConfig = Field(default_factory=SessionsConfig)

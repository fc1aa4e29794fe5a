"""Wiring only: build the gateway's dependencies from a config and register handlers and middleware.

One middleware (``middleware.request_middleware``), whose stages run in this order: page language, request
id first (so every error carries one), the request's span when tracing is on (so every later line carries
its trace id), metrics (so translated errors are counted with their final status), then error translation.
Handler order: the broker's own ``/.auth/*`` paths, then the proxy catch-all.
A config reload (``reload.py``) swaps the per-config ``Gateway``; ``Services`` live as long as the app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from broker.config.load import load_config
from broker.config.schema import BrokerConfig
from broker.config.validate import decode_secret_key
from broker.errors import ConfigError, ConfigProblem
from broker.gateway import GATEWAY, Gateway, GatewayHolder
from broker.handlers import callback, login, logout, protected, service, verify
from broker.http import paths
from broker.identity.assertion import AssertionSigner, SigningKey, load_signing_keys
from broker.identity.claim_mapping import HeaderMaps
from broker.identity.headers import IdentityHeaders
from broker.identity.policy_compiler import RoutePolicies
from broker.identity.refresh import SessionRefresher
from broker.middleware import by_method, request_middleware, staged
from broker.oidc.credentials import ClientCredential, load_credential
from broker.oidc.discovery import DiscoveryCache
from broker.ops.metrics import METRICS, Metrics
from broker.ops.tasks import cancel_and_wait
from broker.ops.tracing import TRACING, Tracing
from broker.proxy import forward
from broker.proxy.boundary import UpstreamBoundary
from broker.proxy.routing import RouteTable
from broker.proxy.upstream import UpstreamClients
from broker.reload import DEFAULT_WATCH_INTERVAL, RELOADER, Reloader
from broker.sessions.cache import INVALIDATION_CHANNEL, SessionCache
from broker.sessions.cookie import CookiePolicy
from broker.sessions.generations import GenerationFloor
from broker.sessions.manager import SessionManager
from broker.sessions.memory import MemoryStore
from broker.sessions.redis_store import RedisStore
from broker.sessions.redis_url import TlsFiles
from broker.sessions.sealing import ServerKeys
from broker.sessions.store import SessionStore
from broker.sessions.store_health import StoreHealth

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter  # the SDK loads only once tracing is on

IDP_USER_AGENT = "entra-broker"
T = TypeVar("T")


def load_keys(config: BrokerConfig, base_dir: Path) -> list[SigningKey]:
    """Load the assertion signing keys, reporting unusable files as config problems."""
    try:
        return load_signing_keys([base_dir / k for k in config.signing.keys])
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError([ConfigProblem("", None, "signing.keys", f"cannot load key: {exc}")]) from None


def load_credentials(config: BrokerConfig, base_dir: Path) -> dict[str, ClientCredential]:
    """Each company's client credential; an unreadable or mismatched certificate is a config problem."""
    credentials: dict[str, ClientCredential] = {}
    problems: list[ConfigProblem] = []
    for code, tenant in config.tenants.items():
        try:
            credentials[code] = load_credential(tenant, base_dir)
        except (OSError, ValueError) as exc:
            key = f"tenants.{code}.certificate"
            problems.append(ConfigProblem("", None, key, f"cannot load certificate credential: {exc}"))
    if problems:
        raise ConfigError(problems)
    return credentials


def make_store(config: BrokerConfig, base_dir: Path, health: StoreHealth | None = None) -> SessionStore:
    """The configured session store; ``health`` hears of each of its failures (the memory store has none)."""
    if config.sessions.store == "memory":
        return MemoryStore()
    tls = config.sessions.tls

    def resolve(path: str | None) -> str | None:
        return str(base_dir / path) if path else None

    return RedisStore(
        config.sessions.store,
        TlsFiles(resolve(tls.ca_file), resolve(tls.cert_file), resolve(tls.key_file)),
        store_timeout=config.sessions.store_timeout,
        health=health,
    )


def server_keys(config: BrokerConfig, fallback: ServerKeys | None = None) -> ServerKeys:
    """The configured session server keys; without any (memory store only, enforced by validation), the
    per-process ``fallback``."""
    decoded = [decode_secret_key(text) for text in config.sessions.secret_keys]
    keys = [k for k in decoded if k is not None]
    if keys and len(keys) == len(decoded):
        return ServerKeys(keys)
    if not decoded and fallback is not None and config.sessions.store == "memory":
        return fallback
    # Fail closed (validation reports this first, with the line): never a Redis store without a server key.
    problem = "required with a Redis store: base64 of at least 32 random bytes each"
    raise ConfigError([ConfigProblem("", None, "sessions.secret_keys", problem)])


@dataclass
class Services:
    """What outlives a config reload: the session store, the IdP client, the key cache, the metrics."""

    store: SessionStore
    idp_http: aiohttp.ClientSession
    discovery: DiscoveryCache
    metrics: Metrics
    clock: Callable[[], float]
    session_cache: SessionCache | None = None
    # A random server key for the memory store when none is configured: its sessions die with the
    # process anyway, so a per-process key loses nothing (kept across reloads, like the store).
    fallback_keys: ServerKeys = field(default_factory=ServerKeys.random)
    # Generations seen per session (refuses records put back in the store); outlives reloads too.
    generations: GenerationFloor = field(default_factory=GenerationFloor)
    # The store's recent failures (bookkeeping back-off, readyz "degraded"); outlives reloads, like the store.
    store_health: StoreHealth = field(default_factory=lambda: StoreHealth(time.monotonic))


@dataclass
class Prepared:
    """The parts of a gateway built from files before any I/O: keys, credentials, upstream TLS."""

    config: BrokerConfig
    keys: list[SigningKey]
    credentials: dict[str, ClientCredential]
    upstreams: UpstreamClients


def prepare(config: BrokerConfig, base_dir: Path, source: str = "") -> Prepared:
    """Load what the config names on disk: signing keys, certificate credentials, upstream TLS files.

    Every unusable file is reported in one ``ConfigError`` (start-up, reload and check-config alike),
    each problem labelled with ``source``, the config file that names it.
    """
    problems: list[ConfigProblem] = []

    def attempt(load: Callable[[], T]) -> T | None:
        try:
            return load()
        except ConfigError as exc:
            problems.extend(replace(problem, file=source) for problem in exc.problems)
            return None

    keys = attempt(lambda: load_keys(config, base_dir))
    credentials = attempt(lambda: load_credentials(config, base_dir))
    # Upstream TLS contexts are built now, so unusable CA or client-certificate files stop start-up.
    upstreams = attempt(lambda: UpstreamClients(config.routes, base_dir))
    if keys is None or credentials is None or upstreams is None:
        raise ConfigError(problems)
    return Prepared(config, keys, credentials, upstreams)


def build_gateway(prepared: Prepared, services: Services) -> Gateway:
    """A gateway for one config generation, on the shared services."""
    config = prepared.config
    cookie = CookiePolicy.for_public_url(config.sessions.cookie_name, config.server.public_url)
    signer = AssertionSigner(
        prepared.keys, config.server.public_url.rstrip("/"), config.signing.assertion_ttl
    )
    sessions = SessionManager(
        services.store,
        config.sessions.idle_timeout,
        config.sessions.lifetime,
        services.session_cache,
        keys=server_keys(config, services.fallback_keys),
        floor=services.generations,
        health=services.store_health,
    )
    routes = RouteTable(config.routes)
    return Gateway(
        config=config,
        routes=routes,
        policies=RoutePolicies(routes),
        sessions=sessions,
        signer=signer,
        identity=IdentityHeaders(signer, config.signing.assertion_header, maps=HeaderMaps(config)),
        cookie=cookie,
        discovery=services.discovery,
        idp_http=services.idp_http,
        upstreams=prepared.upstreams,
        credentials=prepared.credentials,
        refresher=SessionRefresher(
            sessions,
            services.discovery,
            services.idp_http,
            config.tenants,
            prepared.credentials,
            config.sessions.refresh_before,
            config.sessions.revalidate_every,
            services.metrics,
            config.sessions.without_refresh_token,
        ),
        # The same cookie policy (and memo) that reads sessions strips the upstream's Cookie header.
        boundary=UpstreamBoundary.from_config(config, cookie),
        clock=services.clock,
    )


def create_app(
    config: BrokerConfig,
    base_dir: Path,
    *,
    clock: Callable[[], float] = time.time,
    store: SessionStore | None = None,
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    watch_interval: float = DEFAULT_WATCH_INTERVAL,
    span_exporter: SpanExporter | None = None,
) -> web.Application:
    """The gateway as an aiohttp application (started by ``web.AppRunner`` or ``web.run_app``).

    With ``config_path`` the config is reloaded when the file changes (and on ``reload_config``, which
    SIGHUP triggers in ``broker run``); ``environ`` resolves its ``${VAR}`` references (default: the
    process environment). ``span_exporter`` receives the spans instead of OTLP (tests), when tracing is on.
    """
    source = str(config_path) if config_path is not None else ""
    prepared = prepare(config, base_dir, source)
    # Built once per app (a change of ``tracing:`` takes a restart, like the session store).
    tracing = Tracing(
        config.tracing.enabled,
        otlp_endpoint=config.tracing.otlp_endpoint,
        sample_ratio=config.tracing.sample_ratio,
        service_name=config.tracing.service_name,
        exporter=span_exporter,
    )
    # No app middleware: every route's handler is wrapped in the request stages (``middleware.staged``).
    app = web.Application(client_max_size=1024**2)
    metrics = Metrics()
    app[METRICS] = metrics
    app[TRACING] = tracing

    async def dependencies(app: web.Application) -> AsyncIterator[None]:
        # No cookie jar on any client: the broker must never carry one user's cookies to another.
        idp_http = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(), headers={"User-Agent": IDP_USER_AGENT}
        )
        # The gateway's clock: the bookkeeping back-off and readyz's "degraded" follow it like sessions do.
        health = StoreHealth(clock, count=lambda operation: metrics.store_errors.labels(operation).inc())
        session_store = store or make_store(config, base_dir, health)
        cache = SessionCache(config.sessions.cache_ttl) if config.sessions.cache_ttl > 0 else None
        services = Services(
            session_store, idp_http, DiscoveryCache(idp_http), metrics, clock, cache, store_health=health
        )
        stop_listening = asyncio.Event()
        listener = (
            asyncio.create_task(
                session_store.listen(INVALIDATION_CHANNEL, cache.invalidate, cache.set_live, stop_listening),
                name="session-invalidations",
            )
            if cache is not None
            else None
        )
        await prepared.upstreams.start(tracing.client_hooks)
        app[GATEWAY] = GatewayHolder(build_gateway(prepared, services))
        reloader = Reloader(
            app,
            config_path,
            load=lambda path: load_config(path, environ),
            assemble=lambda new_config: build_gateway(prepare(new_config, base_dir, source), services),
        )
        app[RELOADER] = reloader
        await reloader.start(watch_interval)
        yield
        stop_listening.set()
        await cancel_and_wait([listener])
        await reloader.stop()
        await app[GATEWAY].current.upstreams.close()
        await idp_http.close()
        await services.store.close()
        tracing.shutdown()

    app.cleanup_ctx.append(dependencies)
    add_routes(app, request_middleware(tracing))
    return app


def add_routes(app: web.Application, stages: Middleware) -> None:
    """Register the broker's own paths, then the proxy catch-all (which also serves login aliases, so
    they change with a reload). Every path takes every method and every handler runs inside ``stages``
    (``middleware.staged``): a method a path does not serve gets its 405 there, so no answer bypasses the
    request id, the metrics and the access log."""

    def every_method(path: str, handler: Handler, **kwargs: Any) -> None:
        app.router.add_route("*", path, staged(stages, handler), **kwargs)

    def route(path: str, handlers: Mapping[str, Handler]) -> None:
        every_method(path, by_method(handlers))

    route(paths.LOGIN, {"GET": login.chooser_page, "POST": login.choose})
    route(paths.company_login("{code}"), {"GET": login.company_page})
    route(paths.company_login_start("{code}"), {"GET": login.start})
    route(paths.CALLBACK, {"GET": callback.callback, "POST": callback.callback})
    route(paths.LOGOUT, {"GET": logout.confirm, "POST": logout.logout})
    route(paths.LOGGED_OUT, {"GET": logout.done})
    route(paths.FRONTCHANNEL_LOGOUT, {"GET": logout.frontchannel})
    route(paths.company_frontchannel_logout("{code}"), {"GET": logout.frontchannel})
    route(paths.JWKS, {"GET": service.jwks})
    route(paths.WELL_KNOWN_JWKS, {"GET": service.jwks})
    route(paths.ME, {"GET": service.me})
    route(paths.HEALTHZ, {"GET": service.healthz})
    route(paths.READYZ, {"GET": service.readyz})
    every_method(paths.VERIFY, verify.verify)
    # ``(?s:.*)``: a tail whose decoded form holds a line break still matches (with a plain ``.*`` it matched
    # no route, and aiohttp's router answered outside the stages).
    every_method(paths.VERIFY + "/{tail:(?s:.*)}", verify.verify)
    every_method(paths.AUTH_PREFIX + "{tail:(?s:.*)}", service.reserved_not_found)
    every_method("/{tail:(?s:.*)}", protected.handle, expect_handler=forward.defer_continue)

"""Wiring only: build the gateway's dependencies from a config and register handlers and middleware.

Middleware order: request id first (so every error carries one), metrics (so translated errors are
counted with their final status), then error translation.
Handler order: the broker's own ``/.auth/*`` paths, operator login aliases, then the proxy catch-all.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from broker import proxy
from broker.config.schema import BrokerConfig
from broker.errors import ConfigError, ConfigProblem
from broker.forwarded import parse_networks
from broker.handlers import callback, login, logout, protected, service
from broker.identity import AssertionSigner, SigningKey, load_signing_keys
from broker.metrics import METRICS, Metrics
from broker.middleware import error_middleware, metrics_middleware, request_id_middleware
from broker.oidc.credentials import ClientCredential, load_credential
from broker.oidc.discovery import DiscoveryCache
from broker.oidc.verifier import source_of
from broker.proxy_headers import Forwarding
from broker.refresh import SessionRefresher
from broker.routing import RouteTable
from broker.runtime import GATEWAY, Gateway
from broker.sessions.cookie import CookiePolicy
from broker.sessions.manager import SessionManager
from broker.sessions.memory import MemoryStore
from broker.sessions.redis_store import RedisStore
from broker.sessions.redis_url import TlsFiles
from broker.sessions.store import SessionStore
from broker.upstream_clients import UpstreamClients

IDP_USER_AGENT = "entra-broker"


def load_keys(config: BrokerConfig, base_dir: Path) -> list[SigningKey]:
    """Load the assertion signing keys, reporting unusable files as config problems."""
    try:
        return load_signing_keys([base_dir / k for k in config.signing.keys])
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            [ConfigProblem("signing.keys", None, "signing.keys", f"cannot load key: {exc}")]
        ) from None


def load_credentials(config: BrokerConfig, base_dir: Path) -> dict[str, ClientCredential]:
    """Each company's client credential; an unreadable or mismatched certificate is a config problem."""
    credentials: dict[str, ClientCredential] = {}
    problems: list[ConfigProblem] = []
    for code, tenant in config.tenants.items():
        try:
            credentials[code] = load_credential(tenant, base_dir)
        except (OSError, ValueError) as exc:
            key = f"tenants.{code}.certificate"
            problems.append(ConfigProblem(key, None, key, f"cannot load certificate credential: {exc}"))
    if problems:
        raise ConfigError(problems)
    return credentials


def make_store(config: BrokerConfig, base_dir: Path) -> SessionStore:
    """The configured session store."""
    if config.sessions.store == "memory":
        return MemoryStore()
    tls = config.sessions.tls

    def resolve(path: str | None) -> str | None:
        return str(base_dir / path) if path else None

    return RedisStore(
        config.sessions.store, TlsFiles(resolve(tls.ca_file), resolve(tls.cert_file), resolve(tls.key_file))
    )


def protected_header_names(config: BrokerConfig) -> frozenset[str]:
    """Every header the broker sets from identity: clients may never supply any of them."""
    names = {config.signing.assertion_header}
    for route in config.routes:
        names |= set(route.headers)
    return frozenset(names)


def create_app(
    config: BrokerConfig,
    base_dir: Path,
    *,
    clock: Callable[[], float] = time.time,
    store: SessionStore | None = None,
) -> web.Application:
    """The gateway as an aiohttp application (started by ``web.AppRunner`` or ``web.run_app``)."""
    keys = load_keys(config, base_dir)
    credentials = load_credentials(config, base_dir)
    # Upstream TLS contexts are built now, so unusable CA or client-certificate files stop start-up.
    upstreams = UpstreamClients(config.routes, base_dir)
    cookie = CookiePolicy.for_public_url(config.sessions.cookie_name, config.server.public_url)
    forwarding = Forwarding(
        protected_headers=protected_header_names(config),
        cookie_name=cookie.name,
        scheme=urlsplit(config.server.public_url).scheme,
        trusted=parse_networks(config.server.trusted_proxies),
    )
    app = web.Application(
        middlewares=[request_id_middleware, metrics_middleware, error_middleware], client_max_size=1024**2
    )
    metrics = Metrics()
    app[METRICS] = metrics

    async def dependencies(app: web.Application) -> AsyncIterator[None]:
        session_store = store or make_store(config, base_dir)
        # No cookie jar on any client: the broker must never carry one user's cookies to another.
        idp_http = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(), headers={"User-Agent": IDP_USER_AGENT}
        )
        await upstreams.start()
        sessions = SessionManager(session_store, config.sessions.idle_timeout, config.sessions.lifetime)
        discovery = DiscoveryCache(idp_http)
        app[GATEWAY] = Gateway(
            config=config,
            routes=RouteTable(config.routes),
            sessions=sessions,
            signer=AssertionSigner(keys, config.server.public_url.rstrip("/"), config.signing.assertion_ttl),
            cookie=cookie,
            discovery=discovery,
            idp_http=idp_http,
            upstreams=upstreams,
            credentials=credentials,
            refresher=SessionRefresher(
                sessions,
                discovery,
                idp_http,
                config.tenants,
                credentials,
                config.sessions.refresh_before,
                config.sessions.revalidate_every,
                metrics,
            ),
            protected_headers=forwarding.protected_headers,
            scheme=forwarding.scheme,
            forwarding=forwarding,
            clock=clock,
        )
        gateway = app[GATEWAY]
        sources = list(dict.fromkeys(source_of(t) for t in config.tenants.values()))
        key_refresher = asyncio.create_task(gateway.discovery.refresh_forever(sources), name="key-refresh")
        yield
        key_refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await key_refresher
        await upstreams.close()
        await idp_http.close()
        await session_store.close()

    app.cleanup_ctx.append(dependencies)
    add_routes(app, config)
    return app


def add_routes(app: web.Application, config: BrokerConfig) -> None:
    """Register the broker's own paths, login aliases and the proxy catch-all, in that order."""
    r = app.router
    r.add_get("/.auth/login", login.chooser_page)
    r.add_post("/.auth/login", login.choose)
    r.add_get("/.auth/login/{code}", login.company_page)
    r.add_get("/.auth/login/{code}/start", login.start)
    r.add_route("GET", "/.auth/callback", callback.callback)
    r.add_route("POST", "/.auth/callback", callback.callback)
    r.add_get("/.auth/logout", logout.confirm)
    r.add_post("/.auth/logout", logout.logout)
    r.add_get("/.auth/logout/done", logout.done)
    r.add_get("/.auth/frontchannel-logout", logout.frontchannel)
    r.add_get("/.auth/frontchannel-logout/{code}", logout.frontchannel)
    r.add_get("/.auth/jwks.json", service.jwks)
    r.add_get("/.well-known/jwks.json", service.jwks)
    r.add_get("/.auth/me", service.me)
    r.add_get("/.auth/healthz", service.healthz)
    r.add_get("/.auth/readyz", service.readyz)
    r.add_route("*", "/.auth/{tail:.*}", service.reserved_not_found)
    for alias in config.server.login_aliases:
        r.add_get(alias, login.company_page)
    r.add_route("*", "/{tail:.*}", protected.handle, expect_handler=proxy.defer_continue)

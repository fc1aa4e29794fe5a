"""The gateway's runtime dependencies, reached through one ``web.AppKey``.

``Gateway`` is everything derived from one config file; a reload builds a new one and swaps it into the
``GatewayHolder`` atomically. Each request pins the gateway it started with (``gateway_of``), so in-flight
requests finish on the config they began with. The long-lived services (session store, IdP client, key
cache, metrics) are shared by every generation: sessions survive reloads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from broker.config.schema import BrokerConfig, TenantConfig
from broker.http.redirects import ReturnTargets
from broker.identity.assertion import AssertionSigner
from broker.identity.bearer import BearerAuthenticator
from broker.identity.headers import IdentityHeaders
from broker.identity.login_rate import LoginRateLimiter
from broker.identity.policy_compiler import RoutePolicies
from broker.identity.refresh import SessionRefresher
from broker.oidc.credentials import ClientCredential
from broker.oidc.discovery import DiscoveryCache
from broker.proxy.boundary import UpstreamBoundary
from broker.proxy.routing import RouteTable, split_host
from broker.proxy.upstream import UpstreamClients
from broker.sessions.cookie import CookiePolicy
from broker.sessions.manager import SessionManager
from broker.sessions.pending_logins import PendingLogins


@dataclass
class Gateway:
    """Everything a handler needs: config, routes, sessions, keys, HTTP clients and the clock."""

    config: BrokerConfig
    routes: RouteTable
    policies: RoutePolicies  # each route's access rules, compiled with this config
    sessions: SessionManager
    signer: AssertionSigner
    identity: IdentityHeaders
    cookie: CookiePolicy
    discovery: DiscoveryCache
    idp_http: aiohttp.ClientSession
    upstreams: UpstreamClients
    credentials: dict[str, ClientCredential]
    refresher: SessionRefresher
    boundary: UpstreamBoundary  # what crosses to and from the upstream (proxy/boundary.py)
    clock: Callable[[], float] = time.time

    def tenant(self, code: str) -> TenantConfig | None:
        """The company for a login code."""
        return self.config.tenants.get(code)

    def listed_companies(self) -> list[tuple[str, str]]:
        """(code, display name) of companies that chose to be listed on public pages."""
        return [(code, t.display_name) for code, t in self.config.tenants.items() if t.listed]

    def public_host(self) -> str:
        """The host of ``server.public_url``."""
        return urlsplit(self.config.server.public_url).hostname or ""

    def is_known_host(self, host: str) -> bool:
        """A host the broker serves: the public URL's or one a route names."""
        return split_host(host) == self.public_host() or self.routes.routes_host(host)

    @cached_property
    def bearer_boundary(self) -> UpstreamBoundary:
        """The boundary for bearer calls: the ``Authorization`` header is not passed upstream."""
        return self.boundary.without_authorization()

    @cached_property
    def return_targets(self) -> ReturnTargets:
        """Where absolute return URLs may point: the origins this config serves (built once per config)."""
        return ReturnTargets.served(self.config.server.public_url, (r.host for r in self.config.routes))

    @cached_property
    def pending_logins(self) -> PendingLogins:
        """Login state between ``/start`` and the callback, capped (``sessions.max_pending_logins``)."""
        return PendingLogins(self.sessions.store, self.config.sessions.max_pending_logins, self.sessions.keys)

    @cached_property
    def bearer(self) -> BearerAuthenticator:
        """Access tokens validated for API routes, cached until they expire (a reload starts afresh)."""
        return BearerAuthenticator(self.config.tenants, self.discovery)

    @cached_property
    def login_limiter(self) -> LoginRateLimiter:
        """Sign-in starts per client address in this process (a reload starts it afresh)."""
        server = self.config.server
        return LoginRateLimiter(server.login_rate_per_second, server.login_rate_burst)

    def origin_for(self, request: web.Request) -> str:
        """The origin to build callback/logout URLs on: the request's host when the broker serves it.

        The scheme comes from the configured public URL, never from the request, so it cannot be spoofed.
        """
        public = urlsplit(self.config.server.public_url)
        if request.host and self.is_known_host(request.host):
            return f"{public.scheme}://{request.host}"
        return f"{public.scheme}://{public.netloc}"


class GatewayHolder:
    """The current gateway; replaced as a whole by a reload."""

    def __init__(self, gateway: Gateway) -> None:
        self.current = gateway
        self.generation = 1

    def swap(self, gateway: Gateway) -> Gateway:
        """Install a new gateway; returns the previous one (still serving its in-flight requests)."""
        previous, self.current = self.current, gateway
        self.generation += 1
        return previous


GATEWAY = web.AppKey("gateway", GatewayHolder)
PINNED_GATEWAY = web.RequestKey("gateway", Gateway)


def gateway_of(request: web.Request) -> Gateway:
    """The gateway serving this request: the current one when it arrived, for its whole life."""
    pinned = request.get(PINNED_GATEWAY)
    if pinned is None:
        pinned = request.app[GATEWAY].current
        request[PINNED_GATEWAY] = pinned
    return pinned

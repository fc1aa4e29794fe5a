"""The clients that reach upstreams: per distinct way of connecting, one pool of HTTP/1.1 connections
(``proxy/http1``: plain requests) and one aiohttp ``ClientSession`` (WebSocket handshakes only).

Routes that reach their upstreams the same way (same unix socket or TCP, same TLS settings, same idle
timeout) share one pool and one session. TLS contexts are built once, when the app is created,
so a missing CA bundle or an unreadable client key stops start-up with a config error instead of failing
the first request. No client has a cookie jar: the broker must never carry one user's cookies to another.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from broker.config.schema import (
    DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
    DEFAULT_UPSTREAM_READ_TIMEOUT,
    RouteConfig,
    UpstreamTlsConfig,
)
from broker.errors import ConfigError, ConfigProblem
from broker.proxy.http1.client import HttpClient, Timeouts
from broker.proxy.http1.connection import Destination
from broker.proxy.http1.pool import ConnectionPool
from broker.proxy.upstream_url import UpstreamTarget, parse_upstream

DEFAULT_POOL_SIZE = 256
# aiohttp would add these on its own to a WebSocket handshake; the upstream must see the client's (or none).
SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
# For requests made without a per-route timeout (the WebSocket handshake); never disabled.
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(
    total=None,
    connect=DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
    sock_connect=DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
    sock_read=DEFAULT_UPSTREAM_READ_TIMEOUT,
)


def ssl_context(tls: UpstreamTlsConfig, base_dir: Path) -> ssl.SSLContext:
    """How to trust an https upstream: system CAs, the route's ``ca_file``, or (explicitly) nothing;
    plus the client certificate to present when the upstream asks for one (mutual TLS)."""
    if tls.verify:
        cafile = str(base_dir / tls.ca_file) if tls.ca_file else None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    else:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_file:
        key = str(base_dir / tls.key_file) if tls.key_file else None
        context.load_cert_chain(str(base_dir / tls.cert_file), key)
    return context


@dataclass(frozen=True)
class PoolKey:
    """What makes two routes' connections interchangeable."""

    unix_socket: str | None
    tls: UpstreamTlsConfig | None
    idle_timeout: float


@dataclass(frozen=True)
class Upstream:
    """How one route reaches its upstream: where, and through which pooled clients. Built once per route
    when the clients start, not once per request."""

    target: UpstreamTarget
    # Plain HTTP: the pooled HTTP/1.1 client, the destination of its connections, the Host it sends.
    client: HttpClient
    destination: Destination
    host: str
    # Connect (including the wait for a pooled connection) and per-read limits; never disabled.
    timeouts: Timeouts
    # WebSocket handshakes: aiohttp's client, with the same limits as a ``ClientTimeout``.
    http: aiohttp.ClientSession
    timeout: aiohttp.ClientTimeout


def pool_key(route: RouteConfig, target: UpstreamTarget) -> PoolKey:
    """The pool a route's connections belong to (TLS settings matter only for https)."""
    tls = route.tls if target.base.scheme == "https" else None
    return PoolKey(target.unix_socket, tls, route.idle_timeout)


def destination_of(target: UpstreamTarget) -> Destination:
    """Where a route's connections go: its unix socket, or the host and port of its URL."""
    base = target.base
    if target.unix_socket is not None:
        return Destination(base.host or "", 0, unix_socket=target.unix_socket)
    assert base.host is not None and base.port is not None  # validated with the config
    return Destination(base.host, base.port, tls=base.scheme == "https")


def route_timeout(route: RouteConfig) -> aiohttp.ClientTimeout:
    """A route's connect and per-read limits; no total, so long downloads and streams are not cut."""
    connect = route.connect_timeout
    return aiohttp.ClientTimeout(
        total=None, connect=connect, sock_connect=connect, sock_read=route.read_timeout
    )


class UpstreamClients:
    """Every route's upstream client; sessions open with ``start()`` and close with ``close()``."""

    def __init__(
        self, routes: Sequence[RouteConfig], base_dir: Path, pool_size: int = DEFAULT_POOL_SIZE
    ) -> None:
        # Auth-only routes (no upstream: forward-auth) have no client.
        self._targets = {i: parse_upstream(r.upstream) for i, r in enumerate(routes) if r.upstream}
        self._keys = {i: pool_key(routes[i], t) for i, t in self._targets.items()}
        self._timeouts = {i: route_timeout(routes[i]) for i in self._targets}
        self._pool_size = pool_size
        self._contexts: dict[UpstreamTlsConfig, ssl.SSLContext] = {}
        problems: list[ConfigProblem] = []
        for i, key in self._keys.items():
            if key.tls is None or key.tls in self._contexts:
                continue
            try:
                self._contexts[key.tls] = ssl_context(key.tls, base_dir)
            except (OSError, ssl.SSLError) as exc:
                where = f"routes[{i}].tls"
                problems.append(ConfigProblem("", None, where, f"cannot load TLS files: {exc}"))
        if problems:
            raise ConfigError(problems)
        self._sessions: dict[PoolKey, aiohttp.ClientSession] = {}
        self._clients: dict[PoolKey, HttpClient] = {}
        self._upstreams: dict[int, Upstream] = {}

    def _connector(self, key: PoolKey) -> aiohttp.BaseConnector:
        if key.unix_socket is not None:
            return aiohttp.UnixConnector(
                key.unix_socket, limit=self._pool_size, keepalive_timeout=key.idle_timeout
            )
        context = self._contexts[key.tls] if key.tls is not None else True
        return aiohttp.TCPConnector(limit=self._pool_size, keepalive_timeout=key.idle_timeout, ssl=context)

    async def start(self, hooks: Sequence[aiohttp.TraceConfig] = ()) -> None:
        """Open one pool and one session per pool key (inside the running event loop); ``hooks`` trace
        the sessions' WebSocket handshakes (the HTTP client traces through ``ops/tracing.client_span``)."""
        for key in dict.fromkeys(self._keys.values()):
            context = self._contexts[key.tls] if key.tls is not None else None
            self._clients[key] = HttpClient(ConnectionPool(self._pool_size, key.idle_timeout, context))
            self._sessions[key] = aiohttp.ClientSession(
                trace_configs=list(hooks) or None,
                connector=self._connector(key),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=SKIP_AUTO_HEADERS,
                timeout=DEFAULT_TIMEOUT,
            )
        for i, target in self._targets.items():
            key, timeout = self._keys[i], self._timeouts[i]
            self._upstreams[i] = Upstream(
                target,
                self._clients[key],
                destination_of(target),
                # As aiohttp sent it: the URL's host, and its port unless it is the scheme's default.
                target.base.host_port_subcomponent or "",
                Timeouts(timeout.connect or 0.0, timeout.sock_read or 0.0),
                self._sessions[key],
                timeout,
            )

    def for_route(self, index: int) -> Upstream:
        """The upstream of ``routes[index]`` (KeyError for an auth-only route: the caller checks)."""
        return self._upstreams[index]

    async def close(self) -> None:
        """Close every pool and session and their pooled connections."""
        for client in self._clients.values():
            await client.close()
        for session in self._sessions.values():
            await session.close()
        self._clients.clear()
        self._sessions.clear()
        self._upstreams.clear()

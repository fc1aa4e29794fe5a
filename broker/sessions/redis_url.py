"""Turn a session-store URL into a redis-py client: single server, Sentinel or Cluster, plain or TLS.

    redis://[:password@]host:6379/0                       one server
    rediss://…                                            the same over TLS
    redis+sentinel://[:password@]h1:26379,h2:26379/mymaster/0   Sentinel: master name, several sentinels
    redis+cluster://[:password@]h1:7000,h2:7001           Redis Cluster: any of its nodes
    rediss+sentinel://…, rediss+cluster://…               the same over TLS

TLS options (CA bundle, client certificate) come from the config, not the URL, so paths are checked.

Timeouts derive from one setting, ``sessions.store_timeout``: the store (``redis_store.py``) bounds each
operation, retries included, by it with ``asyncio.timeout``; the sockets get half of it each (connect,
then each reply), so a connection that hangs mid-failover still leaves time for one attempt on a fresh
connection to the new master. redis-py applies its retry policy twice, around the command and around each
(re)connect (``(RETRIES + 1) ** 2`` socket timeouts); its default of 10 retries had turned one request
against a hung or TLS-misconfigured Redis into minutes, and the overall bound now caps even one retry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff

from broker.config.schema import DEFAULT_STORE_TIMEOUT

RETRIES = 1  # one quick retry rides over a connection Redis dropped (restart, failover); see the docstring
SCHEMES = frozenset(
    {"redis", "rediss", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"}
)


@dataclass(frozen=True)
class TlsFiles:
    """CA bundle and optional client certificate for ``rediss`` URLs."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


def _hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    hosts = []
    for part in netloc.rsplit("@", 1)[-1].split(","):
        if part.startswith("["):  # IPv6 literal, with or without a port: [::1] or [::1]:6379
            host, _, rest = part[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = part.rpartition(":") if ":" in part else (part, "", "")
        hosts.append((host or "localhost", int(port) if port else default_port))
    return hosts


def _password(netloc: str) -> str | None:
    if "@" not in netloc:
        return None
    userinfo = netloc.rsplit("@", 1)[0]
    return unquote(userinfo.split(":", 1)[1]) if ":" in userinfo else unquote(userinfo) or None


def socket_timeout(store_timeout: float) -> float:
    """Half the overall bound: one hung socket leaves time for one more try on a fresh connection."""
    return store_timeout / 2


def connect(
    url: str, tls: TlsFiles | None = None, store_timeout: float = DEFAULT_STORE_TIMEOUT
) -> redis.Redis | RedisCluster:
    """A client for ``url`` (see the module docstring); nothing connects until the first command."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported session store URL scheme {scheme!r}")
    common: dict[str, Any] = {
        "socket_timeout": socket_timeout(store_timeout),
        "socket_connect_timeout": socket_timeout(store_timeout),
        "password": _password(parts.netloc),
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), RETRIES),
    }
    if scheme.startswith("rediss"):
        common.update(ssl=True, ssl_cert_reqs="required")
        if tls is not None:
            common.update(ssl_ca_certs=tls.ca_file, ssl_certfile=tls.cert_file, ssl_keyfile=tls.key_file)
    path = [p for p in parts.path.split("/") if p]
    if scheme.endswith("+sentinel"):
        if not path:
            raise ValueError(
                "a Sentinel URL needs the master name: redis+sentinel://h1:26379,h2:26379/mymaster/0"
            )
        db = int(path[1]) if len(path) > 1 else 0
        # The URL's password is the data nodes'; sentinels usually have none (and a password they do not
        # expect makes every master lookup fail), so it is not sent to them.
        sentinel_kwargs = {k: v for k, v in common.items() if k != "password"}
        sentinel = Sentinel(_hosts(parts.netloc, 26379), sentinel_kwargs=sentinel_kwargs, **common)  # type: ignore[no-untyped-call]
        client: redis.Redis = sentinel.master_for(path[0], db=db)
        return client
    if scheme.endswith("+cluster"):
        nodes = [ClusterNode(host, port) for host, port in _hosts(parts.netloc, 6379)]
        return RedisCluster(startup_nodes=nodes, **common)
    db = int(path[0]) if path else 0
    host, port = _hosts(parts.netloc, 6379)[0]
    return redis.Redis(host=host, port=port, db=db, health_check_interval=30, **common)

"""Every session-store URL form builds the client it names, TLS files included (no server needed)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection

from broker.sessions.redis_url import TlsFiles, connect

TLS = TlsFiles("/etc/ca.pem", "/etc/client.pem", "/etc/client.key")
TLS_KWARGS = {
    "ssl_ca_certs": "/etc/ca.pem",
    "ssl_certfile": "/etc/client.pem",
    "ssl_keyfile": "/etc/client.key",
    "ssl_cert_reqs": "required",
}


def _subset(kwargs: Mapping[str, object], keys: Mapping[str, object]) -> dict[str, object]:
    return {k: kwargs.get(k) for k in keys}


def test_single_server_url() -> None:
    client = connect("redis://:p%40ss@10.0.0.5:6380/3")
    assert not isinstance(client, RedisCluster)
    kwargs = client.connection_pool.connection_kwargs
    assert _subset(kwargs, {"host": 0, "port": 0, "db": 0, "password": 0}) == {
        "host": "10.0.0.5",
        "port": 6380,
        "db": 3,
        "password": "p@ss",
    }


def test_ipv6_hosts_with_and_without_a_port() -> None:
    for url, port in (("redis://[::1]/0", 6379), ("redis://[::1]:6380/0", 6380)):
        client = connect(url)
        assert not isinstance(client, RedisCluster)
        assert _subset(client.connection_pool.connection_kwargs, {"host": 0, "port": 0}) == {
            "host": "::1",
            "port": port,
        }


def test_rediss_uses_the_tls_files() -> None:
    client = connect("rediss://127.0.0.1:6380/0", TLS)
    assert not isinstance(client, RedisCluster)
    assert client.connection_pool.connection_class is SSLConnection
    assert _subset(client.connection_pool.connection_kwargs, TLS_KWARGS) == TLS_KWARGS


def test_sentinel_url_names_the_master_db_and_every_sentinel() -> None:
    client = connect("rediss+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26380,10.0.0.3/mymaster/2", TLS)
    assert not isinstance(client, RedisCluster)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert (pool.service_name, pool.connection_kwargs["db"]) == ("mymaster", 2)
    assert pool.connection_class is SentinelManagedSSLConnection
    assert _subset(pool.connection_kwargs, TLS_KWARGS) == TLS_KWARGS
    sentinels = pool.sentinel_manager.sentinels
    addresses = [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
        for s in sentinels
    ]
    assert addresses == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379)]
    assert all(s.connection_pool.connection_class is SSLConnection for s in sentinels)


def test_cluster_url_lists_the_startup_nodes() -> None:
    client = connect("rediss+cluster://10.0.0.1:7000,10.0.0.2:7001", TLS)
    assert isinstance(client, RedisCluster)
    nodes = list(client.nodes_manager.startup_nodes.values())
    assert [(n.host, n.port) for n in nodes] == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert all(n.connection_class is SSLConnection for n in nodes)
    assert all(_subset(n.connection_kwargs, TLS_KWARGS) == TLS_KWARGS for n in nodes)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:6379", "unsupported session store URL scheme"),
        ("redis+sentinel://127.0.0.1:26379", "needs the master name"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        connect(url)


def test_sentinel_password_goes_to_the_data_nodes_only() -> None:
    client = connect("redis+sentinel://:s3cret@127.0.0.1:26379,127.0.0.1:26380/mymaster/0")
    pool = client.connection_pool
    assert pool.connection_kwargs["password"] == "s3cret"
    sentinels = pool.sentinel_manager.sentinels  # type: ignore[attr-defined]
    assert all(s.connection_pool.connection_kwargs.get("password") is None for s in sentinels)

"""What the contract cannot see: TLS refuses the wrong peers, and the Cluster and Sentinel are really used."""

from __future__ import annotations

import time

import pytest
import redis

from broker.errors import SessionStoreUnavailable
from broker.sessions.redis_store import RedisStore
from broker.sessions.redis_url import TlsFiles
from tests.support.redis_topologies import ClusterSetup, SentinelSetup, TlsSetup, client

UNAVAILABLE_WITHIN = 15.0  # redis-py retries a failed connect (10 times, backoff capped at 1 s) first


async def _assert_unavailable(store: RedisStore) -> None:
    started = time.monotonic()
    try:
        with pytest.raises(SessionStoreUnavailable, match="Redis ping failed: ConnectionError"):
            await store.ping()
        with pytest.raises(SessionStoreUnavailable):
            await store.put("k", b"v", 1)
    finally:
        await store.close()
    assert time.monotonic() - started < UNAVAILABLE_WITHIN


async def test_tls_works_with_the_ca_and_a_client_certificate(redis_tls: TlsSetup) -> None:
    store = RedisStore(redis_tls.url, redis_tls.tls, prefix="deployments:tls:")
    try:
        await store.ping()
        await store.put("k", b"over tls", 1)
        assert await store.get("k") == b"over tls"
    finally:
        await store.close()


async def test_tls_without_a_client_certificate_is_refused(redis_tls: TlsSetup) -> None:
    # The server requires one (--tls-auth-clients yes); with TLS 1.3 the refusal arrives on the first read.
    await _assert_unavailable(RedisStore(redis_tls.url, TlsFiles(ca_file=str(redis_tls.material.ca))))


async def test_tls_server_signed_by_another_ca_is_refused(redis_tls: TlsSetup) -> None:
    other_ca = TlsFiles(
        str(redis_tls.material.other_ca),
        str(redis_tls.material.client_cert),
        str(redis_tls.material.client_key),
    )
    await _assert_unavailable(RedisStore(redis_tls.url, other_ca))


async def test_tls_refuses_plain_redis_url(redis_tls: TlsSetup) -> None:
    await _assert_unavailable(RedisStore(redis_tls.url.replace("rediss://", "redis://"), redis_tls.tls))


async def test_cluster_spreads_keys_over_all_three_masters(redis_cluster: ClusterSetup) -> None:
    store = RedisStore(redis_cluster.url, prefix="deployments:spread:")
    try:
        for i in range(60):
            await store.put(f"k{i}", b"v", 5)
            await store.index_add(f"i{i}", "member", b"v", 5)
    finally:
        await store.close()
    for port in redis_cluster.ports:
        with client(port) as node:
            assert node.dbsize() > 0, f"node {port} got no keys: the store is not using the whole cluster"


async def test_sentinel_store_writes_to_the_master_the_sentinels_name(redis_sentinel: SentinelSetup) -> None:
    store = RedisStore(redis_sentinel.url, prefix="deployments:sentinel:")
    try:
        await store.put("k", b"on the master", 5)
    finally:
        await store.close()
    master = redis_sentinel.master_addr(redis_sentinel.sentinel_ports[0])
    assert master is not None
    with client(master[1]) as node:
        assert node.get("deployments:sentinel:k") == b"on the master"
        assert node.info("replication")["role"] == "master"


def test_admin_client_cannot_reach_tls_port_in_plain_text(redis_tls: TlsSetup) -> None:
    """The TLS server has no plain port at all (``--port 0``)."""
    port = int(redis_tls.url.rsplit(":", 1)[1].split("/")[0])
    with client(port) as plain, pytest.raises(redis.RedisError):
        plain.ping()

"""Session-wide Redis deployments for the store tests: each is started once, on first use, and torn down."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.support.redis_topologies import (
    ClusterSetup,
    SentinelSetup,
    TlsSetup,
    cluster_setup,
    sentinel_setup,
    tls_setup,
)

log = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    """Master + replica + 3 sentinels on loopback (shared: tests must not fail the master over)."""
    with sentinel_setup(tmp_path_factory.mktemp("sentinel")) as setup:
        log.info("sentinel deployment up in %.2f s", setup.started_in)
        yield setup


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSetup]:
    """A 3-master Redis Cluster on loopback."""
    with cluster_setup(tmp_path_factory.mktemp("cluster")) as setup:
        log.info("cluster deployment up in %.2f s", setup.started_in)
        yield setup


@pytest.fixture(scope="session")
def redis_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsSetup]:
    """A TLS-only redis-server that requires a client certificate from the test CA."""
    with tls_setup(tmp_path_factory.mktemp("tls")) as setup:
        log.info("tls deployment up in %.2f s", setup.started_in)
        yield setup

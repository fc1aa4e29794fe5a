"""Shared fixtures: a real redis-server for the whole session, and the whole product per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from tests.support.ports import HeldPort
from tests.support.servers import redis_server
from tests.support.stack import Stack, running_stack


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One throw-away redis-server on a loopback port of its own for the test session."""
    with redis_server(tmp_path_factory.mktemp("redis")) as (url, _proc, _port):
        yield url


@pytest.fixture
def fresh_redis_url(redis_url: str) -> str:
    """The session's Redis, emptied first, so sessions and indexes of earlier tests cannot interfere."""
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    return redis_url


@pytest.fixture(params=["memory", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Run a test once with the in-process store and once with Redis."""
    if request.param == "memory":
        return "memory"
    url: str = request.getfixturevalue("fresh_redis_url")
    return url


@pytest.fixture
async def stack(store_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """Dev IdP + whoami backend + gateway on loopback ports, with the parametrised session store."""
    async with running_stack(store_url, tmp_path, {}) as s:
        yield s


@pytest.fixture
async def redis_stack(fresh_redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """The whole product with the Redis store only."""
    async with running_stack(fresh_redis_url, tmp_path, {}) as s:
        yield s


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections for the whole test: held (bound, never listening), so no
    other process can start listening on it meanwhile."""
    with HeldPort() as port:
        yield port.number

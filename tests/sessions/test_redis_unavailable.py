"""An unreachable or hung Redis, in every URL form: a quick ``SessionStoreUnavailable`` (503), no hang."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from broker.errors import SessionStoreUnavailable
from broker.sessions.redis_store import RedisStore

URL_FORMS = ["redis://127.0.0.1:{port}/0", "redis+sentinel://127.0.0.1:{port}/mymaster/0"]
URL_FORMS += ["redis+cluster://127.0.0.1:{port}"]


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel queues them) and never answers a byte."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


async def _ping_fails_within(url: str, seconds: float, store_timeout: float = 2.0) -> None:
    store = RedisStore(url, store_timeout=store_timeout)
    started = time.monotonic()
    try:
        with pytest.raises(SessionStoreUnavailable, match="Redis ping failed"):
            await store.ping()
    finally:
        await store.close()
    assert time.monotonic() - started < seconds


@pytest.mark.parametrize("form", URL_FORMS)
async def test_nothing_listening(form: str, refused_port: int) -> None:
    # The cluster client raises RedisClusterException here, which is not a RedisError.
    await _ping_fails_within(form.format(port=refused_port), 2.0)


@pytest.mark.parametrize("form", URL_FORMS)
async def test_hung_server_fails_within_the_store_timeout(form: str, hung_port: int) -> None:
    # redis-py retries around the command and again around each connect ((RETRIES + 1) ** 2 socket
    # timeouts, each half the store timeout); the store's overall bound cuts that to sessions.store_timeout.
    store_timeout = 0.4
    await _ping_fails_within(form.format(port=hung_port), store_timeout + 0.25, store_timeout)

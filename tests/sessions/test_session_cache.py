"""The in-process session cache: it saves the store round trip, and never outlives a revocation.

Two gateway replicas share a real Redis; invalidations travel over Redis pub/sub. Each test states the
defence it proves: remove the publish, the subscription, the key comparison or the fail-closed reset and
the test fails.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as redis

from broker.cli.main import main as broker_cli
from broker.sessions.cache import SessionCache
from broker.sessions.manager import SESSION_PREFIX
from broker.sessions.model import Session
from broker.sessions.redis_store import KEY_PREFIX
from broker.sessions.sealing import SealKey
from broker.sessions.ticket import format_ticket, parse_ticket
from tests.support.stack import ADELE, Stack, running_stack

REVOCATION_DEADLINE = 1.0  # the bound: revocation takes effect on every replica within a second


@pytest.fixture
async def replicas(fresh_redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(fresh_redis_url, tmp_path, {}, gateways=2) as stack:
        yield stack


def ticket_of(browser: aiohttp.ClientSession) -> str:
    return next(c.value for c in browser.cookie_jar if c.key == "broker")


async def signed_in(stack: Stack) -> tuple[str, SealKey]:
    """Adele's ticket after a real login, and the seal key it holds."""
    async with stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        ticket = ticket_of(browser)
    key = parse_ticket(ticket)
    assert key is not None
    return ticket, key


async def status_on(url: str, ticket: str, path: str = "/") -> int:
    async with aiohttp.ClientSession(
        headers={"Accept": "application/json", "Cookie": f"broker={ticket}"}
    ) as client:
        async with client.get(f"{url}{path}", allow_redirects=False) as resp:
            await resp.read()
            return resp.status


async def seconds_until_refused(url: str, ticket: str, limit: float = 5.0) -> float:
    """How long until ``url`` refuses the ticket (401); ``limit`` when it never does."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if await status_on(url, ticket) == 401:
            return time.monotonic() - started
        await asyncio.sleep(0.01)
    return limit


async def redis_command_count(client: redis.Redis, command: str) -> int:
    stats = await client.info("commandstats")
    entry = stats.get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0


async def test_a_cached_session_costs_no_store_read(replicas: Stack) -> None:
    """Defence proven: the cache itself. 50 requests on each replica read Redis at most once per process."""
    client = redis.Redis.from_url(replicas.store_url)
    try:
        async with replicas.browser() as browser:
            await replicas.login(browser, "contoso", ADELE.username)
            ticket = ticket_of(browser)
        before = await redis_command_count(client, "get")
        for _ in range(50):
            for url in replicas.gateway_urls:
                assert await status_on(url, ticket) == 200
        reads = await redis_command_count(client, "get") - before
        assert reads <= len(replicas.gateway_urls), f"{reads} Redis GETs for 100 requests"
    finally:
        await client.aclose()


async def test_logout_on_one_replica_reaches_the_others_cache_within_a_second(replicas: Stack) -> None:
    """Defence proven: logout publishes an invalidation that every replica's subscriber applies."""
    first, second = replicas.gateway_urls
    async with replicas.browser() as browser:
        await replicas.login(browser, "contoso", ADELE.username)
        ticket = ticket_of(browser)
        assert await status_on(second, ticket) == 200  # now cached on the second replica
        async with browser.get(f"{first}/.auth/logout") as resp:
            csrf = (await resp.text()).split('name="csrf" value="')[1].split('"')[0]
        async with browser.post(f"{first}/.auth/logout", data={"csrf": csrf}) as resp:
            assert resp.status == 200
    assert await seconds_until_refused(second, ticket) < REVOCATION_DEADLINE


async def test_operator_revocation_from_the_cli_reaches_running_gateways(
    replicas: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence proven: ``broker sessions revoke`` (another process, no cache) publishes too."""
    for name, value in {"TEST_CONTOSO_SECRET": "x", "TEST_FABRIKAM_SECRET": "y"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TEST_SESSION_KEY", replicas.env["TEST_SESSION_KEY"])
    ticket, key = await signed_in(replicas)
    for url in replicas.gateway_urls:
        assert await status_on(url, ticket) == 200
    config = str(replicas.config_path)
    args = ["sessions", "revoke", "--config", config, key.storage_id()]
    assert await asyncio.to_thread(broker_cli, args) == 0
    for url in replicas.gateway_urls:
        assert await seconds_until_refused(url, ticket) < REVOCATION_DEADLINE


async def test_a_lost_subscription_empties_the_cache(replicas: Stack) -> None:
    """Defence proven: fail closed. A session deleted behind the broker's back (no message sent) is still
    served from cache, as designed; once the subscription is cut and comes back, nothing cached survives,
    because messages sent meanwhile would have been lost."""
    client = redis.Redis.from_url(replicas.store_url)
    try:
        ticket, key = await signed_in(replicas)
        url = replicas.gateway_urls[0]
        assert await status_on(url, ticket) == 200
        await client.delete(KEY_PREFIX + SESSION_PREFIX + key.storage_id())
        assert await status_on(url, ticket) == 200  # served from the cache: nothing announced the delete
        killed = await client.client_kill_filter(_type="pubsub")
        assert killed >= 1
        assert await seconds_until_refused(url, ticket) < 5.0
    finally:
        await client.aclose()


async def test_a_wrong_key_for_a_cached_session_is_refused(replicas: Stack) -> None:
    """Defence proven: the cache hands a session only to the exact ticket (id and key)."""
    ticket, key = await signed_in(replicas)
    url = replicas.gateway_urls[0]
    assert await status_on(url, ticket) == 200
    forged = format_ticket(SealKey(key.record_id, bytes(32)))
    assert await status_on(url, forged) == 401
    assert await status_on(url, ticket) == 200


def test_cache_unit_rules() -> None:
    """The rules without servers: not live -> no hits; TTL; key match; an invalidation during a read wins."""
    now = [0.0]
    cache = SessionCache(10.0, max_entries=4, clock=lambda: now[0])
    key = SealKey.new()
    session = Session(login_code="contoso", tid="t", oid="o")
    cache.put(key, session, cache.epoch)
    assert cache.get(key) is None  # not live: nothing was stored
    cache.set_live(True)
    cache.put(key, session, cache.epoch)
    assert cache.get(key) is session
    assert cache.get(SealKey(key.record_id, bytes(32))) is None
    epoch = cache.epoch
    cache.invalidate(key.storage_id())
    cache.put(key, session, epoch)  # read before the invalidation: must not be cached
    assert cache.get(key) is None
    cache.put(key, session, cache.epoch)
    now[0] = 10.5
    assert cache.get(key) is None  # past the TTL
    for _ in range(10):
        cache.put(SealKey.new(), session, cache.epoch)
    assert len(cache) <= 4
    cache.set_live(False)
    assert len(cache) == 0

"""Issue 14.2, stream L: a full Redis (``maxmemory`` reached, ``noeviction``) never locks signed-in users
out. Reads work and writes fail: sessions are served, the last-seen write backs off and is counted,
readyz says "degraded" (still 200), and a sign-in start gets the named 503, never a 500.

Real redis-server, dev IdP, whoami backend and gateway; the gateway's clock is moved to make the
last-seen write (and the end of the back-off) fall due.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from broker.ops.metrics import METRICS
from broker.sessions.store_health import BOOKKEEPING_BACKOFF, DEGRADED_WINDOW
from tests.security.test_session_store_attackers import remote_user, stored_session, ticket_of
from tests.support.redis_memory import full_redis
from tests.support.stack import ADELE, Stack, running_stack

TOUCH_DUE = 120.0  # past the once-a-minute last-seen interval


@dataclass
class ClockedStack:
    """A Redis stack whose gateways' clock runs ``offset`` seconds ahead of the wall clock."""

    stack: Stack
    offset: list[float]

    def advance_to(self, seconds: float) -> None:
        """Set the clock to the wall clock plus ``seconds``."""
        self.offset[0] = seconds


@pytest.fixture
async def clocked(fresh_redis_url: str, tmp_path: Path) -> AsyncIterator[ClockedStack]:
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    async with running_stack(fresh_redis_url, tmp_path, {}, clock=clock) as stack:
        yield ClockedStack(stack, offset)


def store_errors(stack: Stack, operation: str) -> float:
    """``broker_session_store_errors_total{operation=...}`` as the metrics endpoint shows it."""
    app = stack.runners[-1].app
    assert app is not None
    text = app[METRICS].exposition().decode()
    found = re.search(rf'^broker_session_store_errors_total{{operation="{operation}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def readyz(stack: Stack) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(f"{stack.gateway_url}/.auth/readyz") as resp:
        return resp.status, await resp.json()


async def stored_last_seen(stack: Stack, browser: aiohttp.ClientSession) -> float:
    """The last-seen time in the stored record."""
    session = await stored_session(stack, ticket_of(browser))
    assert session is not None
    return session.last_seen


async def test_a_full_redis_serves_signed_in_users_and_backs_off_the_last_seen_write(
    clocked: ClockedStack, fresh_redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Defences: a failed last-seen write never refuses the request (``SessionManager._touch``); after one
    fails, no other is tried for ``BOOKKEEPING_BACKOFF`` (``StoreHealth.backing_off``), so a full Redis
    costs one write and one log line per interval, not one per request; each failure is counted."""
    stack = clocked.stack
    async with stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        assert (await stack.whoami(browser))[0] == 200
        signed_in_at = await stored_last_seen(stack, browser)
        caplog.set_level(logging.WARNING, logger="broker.sessions.manager")
        async with full_redis(fresh_redis_url):
            clocked.advance_to(TOUCH_DUE)
            for _ in range(5):
                status, body = await stack.whoami(browser)
                assert status == 200, body
                assert remote_user(body) == ADELE.username
            assert store_errors(stack, "write") == 1.0  # one attempt, not five
            logged = [r for r in caplog.records if "could not record last-seen" in r.getMessage()]
            assert len(logged) == 1
            clocked.advance_to(TOUCH_DUE + BOOKKEEPING_BACKOFF + 1)  # the back-off is over: tried again
            assert (await stack.whoami(browser))[0] == 200
            assert store_errors(stack, "write") == 2.0
        # Memory freed: the next due write goes through once the back-off has passed.
        clocked.advance_to(TOUCH_DUE + 2 * BOOKKEEPING_BACKOFF + 2)
        assert (await stack.whoami(browser))[0] == 200
        assert await stored_last_seen(stack, browser) > signed_in_at + TOUCH_DUE
        assert store_errors(stack, "write") == 2.0


async def test_readyz_says_degraded_while_redis_refuses_writes_and_stays_200(
    clocked: ClockedStack, fresh_redis_url: str
) -> None:
    """Defence: readyz reports a store that reads but refused a write as ``degraded`` with 200 (taking a
    replica out of rotation fixes no full Redis), ``ok`` once no write has failed for ``DEGRADED_WINDOW``."""
    stack = clocked.stack
    async with stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        assert (await readyz(stack))[1]["session_store"] == "ok"
        async with full_redis(fresh_redis_url):
            clocked.advance_to(TOUCH_DUE)
            assert (await stack.whoami(browser))[0] == 200
            status, body = await readyz(stack)
            assert (status, body["status"], body["session_store"]) == (200, "ready", "degraded"), body
        status, body = await readyz(stack)
        assert body["session_store"] == "degraded"  # a write failed less than DEGRADED_WINDOW ago
        clocked.advance_to(TOUCH_DUE + DEGRADED_WINDOW + 1)
        status, body = await readyz(stack)
        assert (status, body["session_store"]) == (200, "ok"), body


@pytest.mark.parametrize("accept", ["application/json", "text/html"])
async def test_a_sign_in_start_with_a_full_redis_is_the_named_503(
    clocked: ClockedStack, fresh_redis_url: str, accept: str
) -> None:
    """Defence: a sign-in start needs a write (its login state); a full Redis makes it the clear
    ``session_store_unavailable`` 503 (JSON or page, with the request id), never a 500; then readyz says
    ``degraded``. Signed-in users meanwhile are served (the test above)."""
    stack = clocked.stack
    start = f"{stack.gateway_url}/.auth/login/contoso/start"
    async with aiohttp.ClientSession() as http:
        async with http.get(start, allow_redirects=False) as resp:
            assert resp.status == 302  # the IdP's metadata is loaded: only the store can fail below
        async with full_redis(fresh_redis_url):
            async with http.get(start, headers={"Accept": accept}, allow_redirects=False) as resp:
                text = await resp.text()
                assert resp.status == 503, text
                assert "Traceback" not in text
                if accept == "application/json":
                    body = await resp.json()
                    assert body["error"] == "session_store_unavailable"
                    assert body["request_id"] == resp.headers["X-Request-Id"]
                else:
                    assert "cannot reach its session store" in text
                    assert resp.headers["X-Request-Id"] in text
            assert store_errors(stack, "write") >= 1.0
            assert (await readyz(stack))[1]["session_store"] == "degraded"

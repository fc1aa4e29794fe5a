"""Fault injection under traffic (issue 8): each test keeps real clients looping requests through the
gateway (a signed-in user in JSON and HTML, a user of another company, anonymous clients, a forged ticket,
a public route) while a server behind it is really stopped, paused or broken, and then repaired.

For every answer collected (``tests/support/traffic.py``): no 500 and no stack trace; every error is a
documented one naming its cause (``session_store_unavailable``, ``identity_provider_unavailable``,
``upstream_unreachable``, ``upstream_timeout``); nothing is let through that should be refused (anonymous
clients never get a 200 on a protected route, no session ever carries another user's identity); and once
the fault is gone, the same session cookies work again without restarting the gateway.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
import yaml
from aiohttp import web

from broker.config.schema import DEFAULT_STORE_TIMEOUT
from broker.identity.assertion import generate_es256_pem
from broker.identity.refresh import RETRY_AFTER_FAILURE
from broker.ops.metrics import METRICS, Metrics
from broker.proxy.forward import TOO_SLOW, UNREACHABLE
from broker.sessions.manager import SESSION_PREFIX
from broker.sessions.redis_store import KEY_PREFIX
from broker.sessions.ticket import parse_ticket
from demo import create_demo_app
from tests.support.ports import HeldPort
from tests.support.servers import serve, wait_until_serving
from tests.support.stack import (
    ADELE,
    ALEX,
    CONTOSO_SECRET,
    FABRIKAM_SECRET,
    MEGAN,
    Stack,
    devidp_config,
    gateway_config,
    new_session_key,
    running_stack,
)
from tests.support.traffic import (
    DROPPED,
    FAULT,
    RECOVERED,
    REDIRECT,
    REFUSED,
    Client,
    FlakyUpstream,
    OffsetClock,
    PersistentRedis,
    Traffic,
    assert_clean,
    session_cookie,
    standard_clients,
    start_idp_with_state,
    stop_idp_keeping_state,
)

MINUTE, HOUR = 60.0, 3600.0
STORE_DOWN = "session_store_unavailable"
# Clients whose every answer needs the store sooner or later: a signed-in user (served from the in-process
# session cache only while that cache hears the store's invalidations), a forged ticket, a sign-in start.
STORE_READERS = ("adele-json", "forged-json", "login-start")


async def sign_in(stack: Stack, exits: AsyncExitStack) -> tuple[aiohttp.ClientSession, str, str]:
    """Adele (contoso) and Megan (fabrikam) signed in; (Adele's browser, her cookie, Megan's cookie)."""
    adele = await exits.enter_async_context(stack.browser())
    megan = await exits.enter_async_context(stack.browser())
    await stack.login(adele, "contoso", ADELE.username)
    await stack.login(megan, "fabrikam", MEGAN.username, rd="/fabrikam/")
    return adele, session_cookie(adele), session_cookie(megan)


def login_start(stack: Stack) -> Client:
    """Starting a sign-in writes login state to the store: it fails whenever the store does."""
    return Client(
        "login-start", "/.auth/login/contoso/start", normal=frozenset({REDIRECT}), location=stack.idp_url
    )


def metrics_of(stack: Stack) -> Metrics:
    app = stack.runners[-1].app
    assert app is not None
    return app[METRICS]


def counter(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


def replace_config(stack: Stack, text: str) -> None:
    """A new file renamed over the old one, as an editor or a ConfigMap update does."""
    temporary = stack.config_path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, stack.config_path)


def session_record_exists(url: str, cookie: str) -> bool:
    """Whether the store holds the (sealed) session record of this cookie's ticket."""
    key = parse_ticket(cookie.split("=", 1)[1])
    assert key is not None
    with redis.Redis.from_url(url) as client:
        return bool(client.exists(f"{KEY_PREFIX}{SESSION_PREFIX}{key.storage_id()}"))


async def whoami_user(stack: Stack, browser: aiohttp.ClientSession) -> tuple[int, str | None]:
    status, body = await stack.whoami(browser, "/")
    return status, body.get("headers", {}).get("X-Remote-User") if status == 200 else body.get("error")


# --- Redis ---------------------------------------------------------------------------------------------


async def test_redis_killed_and_restarted_under_traffic(tmp_path: Path) -> None:
    """Redis is SIGKILLed mid-traffic and started again on the same port: 503 ``session_store_unavailable``
    meanwhile (never a 500, never an open door), then the same cookies work again.

    "No session lost that the store kept": this Redis runs with ``appendonly yes`` and ``appendfsync
    always``, so every write it acknowledged (the sessions created at login) is on disk before the
    gateway hears OK, and it reloads them at restart, even after a SIGKILL. The test checks that the
    restarted Redis holds Adele's session record, so her 200s afterwards come from what the store kept.
    (A Redis without persistence keeps nothing across a restart; the lifecycle suite's
    ``test_redis_stopped_and_restarted_under_traffic`` shows that this gives a clean 401, then a new login.)
    """
    (tmp_path / "redis").mkdir()
    store = PersistentRedis(tmp_path / "redis")
    store.start()
    try:
        async with running_stack(store.url, tmp_path, {}) as stack, AsyncExitStack() as exits:
            adele, adele_cookie, megan_cookie = await sign_in(stack, exits)
            clients = [*standard_clients(adele_cookie, megan_cookie), login_start(stack)]
            async with Traffic(stack.gateway_url, clients, faults={STORE_DOWN}) as traffic:
                await traffic.each_answered()
                traffic.phase = FAULT
                store.kill()
                await traffic.fault_seen(STORE_DOWN, clients=STORE_READERS)
                await traffic.each_answered(2)
                store.start()
                await traffic.recover()
            assert_clean(traffic)
            assert session_record_exists(store.url, adele_cookie)
            assert await whoami_user(stack, adele) == (200, ADELE.username)
            async with stack.browser() as later:  # and new sign-ins work again
                await stack.login(later, "contoso", ALEX.username)
                assert await whoami_user(stack, later) == (200, ALEX.username)
    finally:
        store.stop()


async def test_redis_too_slow_under_traffic_gives_503_within_the_client_timeout(tmp_path: Path) -> None:
    """Redis is SIGSTOPped: its port still accepts connections but nothing answers. Each store operation
    gives up at ``sessions.store_timeout`` (default 2 s, ``broker/sessions/redis_errors.py``) and the
    request answers 503 ``session_store_unavailable``, so no request hangs; after SIGCONT the same cookies
    work again. (A configured timeout: ``tests/scenarios/test_store_failover_under_traffic.py``.)"""
    bound = DEFAULT_STORE_TIMEOUT
    (tmp_path / "redis").mkdir()
    store = PersistentRedis(tmp_path / "redis")
    store.start()
    try:
        async with running_stack(store.url, tmp_path, {}) as stack, AsyncExitStack() as exits:
            adele, adele_cookie, megan_cookie = await sign_in(stack, exits)
            clients = [*standard_clients(adele_cookie, megan_cookie), login_start(stack)]
            async with Traffic(stack.gateway_url, clients, faults={STORE_DOWN}) as traffic:
                await traffic.each_answered()
                traffic.phase = FAULT
                store.pause()
                try:
                    await traffic.fault_seen(STORE_DOWN, timeout=bound + 10, clients=STORE_READERS)
                finally:
                    store.resume()
                await traffic.recover(timeout=bound + 5)
            assert_clean(traffic)
            slowest = max(traffic.samples, key=lambda s: s.seconds)
            assert slowest.seconds < bound + 1, f"answered only after {slowest.seconds:.1f} s: {slowest}"
            assert await whoami_user(stack, adele) == (200, ADELE.username)
    finally:
        store.stop()


# --- The identity provider -----------------------------------------------------------------------------


async def test_identity_provider_down_during_login_under_traffic(tmp_path: Path) -> None:
    """The dev IdP stops between sign-in and code redemption while signed-in users keep browsing: each
    pending sign-in gets the 503 page naming Microsoft sign-in, and no session; the existing sessions
    never notice (they do not need the IdP until a refresh is due). Back up, sign-in works again."""
    async with running_stack("memory", tmp_path, {}) as stack, AsyncExitStack() as exits:
        adele, adele_cookie, megan_cookie = await sign_in(stack, exits)
        pending = []
        for _ in range(3):
            browser = await exits.enter_async_context(stack.browser())
            page = await stack.start_login(browser, "contoso")
            pending.append((browser, await stack.pick_user(browser, page, ALEX.username)))
        company_page = Client("company-page", "/.auth/login/contoso", html=True)
        clients = [*standard_clients(adele_cookie, megan_cookie), login_start(stack), company_page]
        async with Traffic(stack.gateway_url, clients) as traffic:
            await traffic.each_answered()
            traffic.phase = FAULT
            state = await stop_idp_keeping_state(stack)
            for browser, form in pending:
                resp = await stack.post_callback(browser, form)
                page = await resp.text()
                assert resp.status == 503, page
                assert "Microsoft sign-in is unreachable" in page and "Traceback" not in page
                assert resp.headers["X-Request-Id"] in page
                assert (await stack.whoami(browser, "/"))[0] == 401  # no session was created
            await traffic.each_answered(2)
            await start_idp_with_state(stack, state)
            await traffic.recover()
            browser, _ = pending[0]
            await stack.login(browser, "contoso", ALEX.username)
            assert await whoami_user(stack, browser) == (200, ALEX.username)
        assert_clean(traffic)  # not one answer of the traffic changed while the IdP was down


async def test_identity_provider_down_during_refresh_under_traffic(tmp_path: Path) -> None:
    """Sessions come due for a refresh while the IdP is down. Documented (``broker/identity/refresh.py``): a
    transient failure keeps the session, retries after ``RETRY_AFTER_FAILURE``, and ends it only at its
    absolute lifetime. So the traffic sees no change at all, even once the ID token has expired; back
    up, the next retry refreshes the session; and the outage never stretches a session past its lifetime.
    """
    clock = OffsetClock()
    async with (
        running_stack("memory", tmp_path, {}, clock=clock, sessions={"lifetime": "3h"}) as stack,
        AsyncExitStack() as exits,
    ):
        adele, adele_cookie, megan_cookie = await sign_in(stack, exits)
        refreshes = metrics_of(stack).refreshes
        async with Traffic(stack.gateway_url, standard_clients(adele_cookie, megan_cookie)) as traffic:
            await traffic.each_answered()
            traffic.phase = FAULT
            state = await stop_idp_keeping_state(stack)
            clock.offset = 56 * MINUTE  # inside the 5-minute refresh window of the 1-hour ID token
            await traffic.until(lambda: counter(refreshes, "contoso", "retry") >= 1, "a failed refresh")
            await traffic.each_answered(2)
            clock.offset = 2 * HOUR + 10 * MINUTE  # the ID token expired over an hour ago
            await traffic.until(
                lambda: counter(refreshes, "contoso", "retry") >= 2, "a second failed refresh"
            )
            await traffic.each_answered(2)
            await start_idp_with_state(stack, state)
            clock.offset += RETRY_AFTER_FAILURE + MINUTE
            await traffic.until(lambda: counter(refreshes, "contoso", "success") >= 1, "a refresh once back")
            await traffic.recover()
        assert_clean(traffic)  # no 503, no 401: access kept through the outage, and nobody else let in
        assert counter(refreshes, "contoso", "ended") == 0
        assert counter(refreshes, "fabrikam", "ended") == 0

        await stop_idp_keeping_state(stack)  # down again, and the session reaches its 3-hour lifetime
        clock.offset = 3 * HOUR + MINUTE
        assert await whoami_user(stack, adele) == (401, "login_required")
        async with adele.get(f"{stack.gateway_url}/", allow_redirects=False) as resp:
            assert resp.status == 302 and resp.headers["Location"].startswith("/.auth/login/contoso")


async def test_identity_provider_down_during_a_jwks_refresh_under_traffic(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The IdP is down when the gateway refetches every company's keys (a reload does, at once). The
    fetch fails, the cached keys stay: sessions keep working, readiness stays green, and once the IdP is
    back a new sign-in's ID token verifies with the cached key without fetching the JWKS; the next key
    refresh fetches them again, without a restart."""
    kept = "JWKS refresh failed; keeping last good keys"
    async with running_stack("memory", tmp_path, {}) as stack, AsyncExitStack() as exits:
        adele, adele_cookie, megan_cookie = await sign_in(stack, exits)
        readyz = Client("readyz", "/.auth/readyz")
        good = yaml.safe_load(stack.config_path.read_text())
        reloads = metrics_of(stack).config_reloads
        async with Traffic(
            stack.gateway_url, [*standard_clients(adele_cookie, megan_cookie), readyz]
        ) as traffic:
            await traffic.each_answered()
            traffic.phase = FAULT
            state = await stop_idp_keeping_state(stack)
            good["tenants"]["contoso"]["note"] = "Reloaded while Microsoft is down."
            replace_config(stack, yaml.safe_dump(good))
            await traffic.until(
                lambda: key_refreshes_failed(caplog) >= 2, "both companies' key refresh failed"
            )
            await traffic.each_answered(2)
            await start_idp_with_state(stack, state)
            fetched = state.stats.jwks
            async with stack.browser() as alex:
                await stack.login(alex, "contoso", ALEX.username)
                assert await whoami_user(stack, alex) == (200, ALEX.username)
            assert state.stats.jwks == fetched  # verified with the cached key: no JWKS fetch
            good["tenants"]["contoso"]["note"] = "Reloaded with Microsoft back."
            replace_config(stack, yaml.safe_dump(good))
            await traffic.until(lambda: counter(reloads, "ok") >= 2, "the second reload")
            await traffic.until(lambda: state.stats.jwks >= fetched + 2, "both companies' keys refetched")
            await traffic.recover()
        assert_clean(traffic)  # not one answer changed, readiness included
        assert sum(r.getMessage() == kept for r in caplog.records) >= 2  # one per company


def key_refreshes_failed(caplog: pytest.LogCaptureFixture) -> int:
    """Key refreshes that failed, whether the keys were kept or not (``broker/oidc/discovery.py``)."""
    return sum(
        r.name == "broker.oidc.discovery"
        and ("JWKS refresh failed" in r.getMessage() or "key refresh failed" in r.getMessage())
        for r in caplog.records
    )


# --- Upstreams -----------------------------------------------------------------------------------------

READ_TIMEOUT = 0.5


@pytest.mark.parametrize(
    ("fault", "error"),
    [("refusing", UNREACHABLE.code), ("resetting", UNREACHABLE.code), ("hanging", TOO_SLOW.code)],
)
async def test_upstream_fault_under_traffic(tmp_path: Path, fault: str, error: str) -> None:
    """The upstream of a protected route closes its port, resets every connection, or accepts and never
    answers: that route answers 502 ``upstream_unreachable`` / 504 ``upstream_timeout`` (after its
    ``read_timeout``), other routes are untouched, anonymous clients and other companies are still
    refused before any upstream is tried; once the upstream is back, the same cookies get through."""
    upstream = FlakyUpstream(HeldPort())
    await upstream.start()
    route = {
        "host": "127.0.0.1",
        "path": "/flaky/",
        "upstream": upstream.url,
        "allow": {"login_codes": ["contoso"]},
        "headers": {"X-Remote-User": "preferred_username"},
        "read_timeout": READ_TIMEOUT,
        "connect_timeout": 1.0,
    }
    try:
        async with (
            running_stack("memory", tmp_path, {}, routes_extra=[route]) as stack,
            AsyncExitStack() as exits,
        ):
            _, adele_cookie, megan_cookie = await sign_in(stack, exits)
            clients = [
                *standard_clients(adele_cookie, megan_cookie, "/flaky/x"),
                Client("adele-other-route", "/", adele_cookie, user=ADELE.username),
            ]
            async with Traffic(stack.gateway_url, clients, faults={error}) as traffic:
                await traffic.each_answered()
                traffic.phase = FAULT
                if fault == "refusing":
                    await upstream.stop()
                else:
                    upstream.mode = "reset" if fault == "resetting" else "hang"
                await traffic.fault_seen(error)
                await traffic.each_answered(2)
                if fault == "refusing":
                    await upstream.start()
                else:
                    upstream.mode = "ok"
                await traffic.recover()
        assert_clean(traffic)
        assert {s.client.name for s in traffic.errors(error)} <= {"adele-json", "adele-html"}
        if fault == "hanging":
            for sample in traffic.errors(error):
                assert READ_TIMEOUT * 0.9 <= sample.seconds < 10, sample
    finally:
        await upstream.stop()
        upstream.port.close()


# --- Configuration -------------------------------------------------------------------------------------


async def test_config_replaced_by_a_broken_file_under_traffic(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The config file is replaced by invalid YAML, then by valid YAML that would open the protected
    route to everyone but has one invalid value: both are refused whole (logged with file:line), the
    running config keeps serving, not one request fails or gets in; then a good file is applied."""
    async with running_stack("memory", tmp_path, {}) as stack, AsyncExitStack() as exits:
        _, adele_cookie, megan_cookie = await sign_in(stack, exits)
        good = stack.config_path.read_text()
        reloads = metrics_of(stack).config_reloads
        company_page = Client("company-page", "/.auth/login/contoso", html=True)
        async with Traffic(
            stack.gateway_url, [*standard_clients(adele_cookie, megan_cookie), company_page]
        ) as traffic:
            await traffic.each_answered()
            traffic.phase = FAULT
            replace_config(stack, good.replace("tenants:", "tenants:\n  broken: [unclosed", 1))
            await traffic.until(lambda: counter(reloads, "error") >= 1, "the broken YAML refused")
            await traffic.each_answered(2)
            opened = yaml.safe_load(good)
            assert opened["routes"][0]["path"] == "/"
            opened["routes"][0]["auth"] = "public"
            opened["tenants"]["contoso"]["tenant_id"] = "not-a-guid"
            replace_config(stack, yaml.safe_dump(opened))
            await traffic.until(lambda: counter(reloads, "error") >= 2, "the invalid file refused")
            await traffic.each_answered(2)
            fixed = yaml.safe_load(good)
            fixed["tenants"]["contoso"]["note"] = "Reloaded under traffic."
            replace_config(stack, yaml.safe_dump(fixed))
            await traffic.until(lambda: counter(reloads, "ok") >= 1, "the good file applied")
            await traffic.recover()
        assert_clean(traffic)  # no failed request, and the route never opened
        assert re.search(r"gateway\.yaml:\d+: not valid YAML", caplog.text), caplog.text
        assert re.search(r"gateway\.yaml:\d+: tenants\.contoso\.tenant_id: must be a GUID", caplog.text)
        assert "Reloaded under traffic." in traffic.of("company-page", RECOVERED)[-1].body


# --- SIGTERM -------------------------------------------------------------------------------------------

SLOW_SECONDS = 2.0


def in_flight_counter(app: web.Application) -> Callable[[], int]:
    """Count the requests the backend has started on ``/_demo/slow`` (so the test knows they are in
    flight)."""
    started = [0]

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/_demo/slow":
            started[0] += 1
        response: web.StreamResponse = await handler(request)
        return response

    app.middlewares.append(count)
    return lambda: started[0]


@pytest.fixture
async def backend() -> AsyncIterator[tuple[str, Callable[[], int]]]:
    """The whoami backend on a loopback port, counting slow requests; (URL, how many slow ones started)."""
    app = create_demo_app("http://127.0.0.1:1/jwks", "http://unused", None)  # identity read from headers
    started = in_flight_counter(app)
    runner = await serve(app)
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}", started
    await runner.cleanup()


class BrokerProcess:
    """``broker run`` as a real process (two workers), its output in a file."""

    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.config, self.env, self.log = config, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, base: str) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "broker", "run", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        await wait_until_serving(base, self.proc, log=self.log)

    async def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, 20)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def test_sigterm_under_traffic(
    fresh_redis_url: str, tmp_path: Path, backend: tuple[str, Callable[[], int]]
) -> None:
    """``broker run`` (two workers, Redis sessions) gets SIGTERM under traffic: requests in flight
    complete with their answer, the process exits 0, and new connections are refused, never answered
    with an error. Started again, it serves the same session cookies (the store kept them)."""
    backend_url, slow_started = backend
    # Both ports held by the test: the workers join the gateway's (SO_REUSEPORT), which refuses connections
    # while no worker listens, and nobody else can take either while the gateway or the dev IdP restarts.
    gw_held, idp_held = HeldPort(), HeldPort()
    gw_port, base, idp_url = gw_held.number, gw_held.url, idp_held.url
    key = tmp_path / "assertion.pem"
    key.write_bytes(generate_es256_pem())
    raw = gateway_config(gw_port, idp_url, backend_url, fresh_redis_url, key)
    raw["server"].update(listen=f"127.0.0.1:{gw_port}", workers=2, shutdown_timeout="10s")
    config = tmp_path / "broker.yaml"
    config.write_text(yaml.safe_dump(raw))
    secrets = {
        "TEST_CONTOSO_SECRET": CONTOSO_SECRET,
        "TEST_FABRIKAM_SECRET": FABRIKAM_SECRET,
        "TEST_SESSION_KEY": new_session_key(),
    }
    broker = BrokerProcess(
        config, {**os.environ, "PYTHONUNBUFFERED": "1", **secrets}, tmp_path / "broker.log"
    )
    stack = Stack(base, idp_url, backend_url, fresh_redis_url, devidp_config(), idp_port=idp_held)
    await stack.start_idp()
    try:
        await broker.start(base)
        async with AsyncExitStack() as exits:
            adele, adele_cookie, megan_cookie = await sign_in(stack, exits)
            clients = standard_clients(adele_cookie, megan_cookie)
            async with (
                Traffic(
                    base,
                    clients,
                    no_answer={REFUSED, DROPPED},
                    no_answer_phases={FAULT, "stopped"},
                    fresh_connections=True,
                ) as traffic,
                aiohttp.ClientSession(headers={"Accept": "application/json", "Cookie": adele_cookie}) as http,
            ):
                await traffic.each_answered()

                async def slow() -> tuple[int, Any]:
                    async with http.get(f"{base}/_demo/slow?seconds={SLOW_SECONDS}") as resp:
                        return resp.status, await resp.json()

                in_flight = [asyncio.create_task(slow()) for _ in range(4)]
                await traffic.until(lambda: slow_started() == 4, "the slow requests reached the backend")
                traffic.phase = FAULT
                assert await broker.terminate() == 0
                assert await asyncio.gather(*in_flight) == [(200, {"slept": SLOW_SECONDS})] * 4
                traffic.phase = "stopped"
                await traffic.each_answered(2)
            assert_clean(traffic)
            assert {s.error for s in traffic.samples if s.phase == "stopped"} == {REFUSED}
            output = broker.log.read_text()
            assert output.count('"shutting down') == 2 and output.count('"stopped"') == 2, output[-3000:]
            assert "Traceback" not in output, output[-3000:]

            await broker.start(base)  # a new gateway process: the sessions were in Redis all along
            assert await whoami_user(stack, adele) == (200, ADELE.username)
            async with (
                aiohttp.ClientSession(headers={"Accept": "application/json", "Cookie": megan_cookie}) as http,
                http.get(f"{base}/") as resp,
            ):
                assert resp.status == 403 and (await resp.json())["error"] == "forbidden"
            assert await broker.terminate() == 0
    finally:
        broker.kill()
        await stack.stop_idp()
        gw_held.close()
        idp_held.close()

"""Running it: readiness with Redis going away and back, metrics, and `broker run` as a real process
(several workers, graceful shutdown under SIGTERM with a request in flight)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from broker.identity.assertion import generate_es256_pem
from broker.ops.metrics import METRICS, metrics_app
from broker.reload import RELOADER
from demo import create_demo_app
from tests.support.broker_run import BrokerRun
from tests.support.ports import HeldPort
from tests.support.servers import serve, start_redis, start_redis_on_some_port
from tests.support.stack import ADELE, CONTOSO_CLIENT, CONTOSO_TID, Stack, new_session_key, running_stack


async def readyz(stack: Stack) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(f"{stack.gateway_url}/.auth/readyz") as resp:
        return resp.status, await resp.json()


async def wait_for(predicate_coro: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate_coro():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_readiness_turns_red_and_green_with_redis(tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    assert binary is not None
    port, proc = start_redis_on_some_port(binary, tmp_path)
    try:
        async with running_stack(f"redis://127.0.0.1:{port}/0", tmp_path, {}) as stack:

            async def ready() -> bool:
                return (await readyz(stack))[0] == 200

            await wait_for(ready)  # companies' keys warmed in the background
            proc.terminate()
            proc.wait(timeout=10)
            status, body = await readyz(stack)
            assert status == 503 and "Redis" in body["session_store"] and body["identity_providers"] == "ok"
            proc = start_redis(binary, port, tmp_path)
            await wait_for(ready)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_readiness_waits_for_the_identity_providers(tmp_path: Path) -> None:
    async with running_stack("memory", tmp_path, {}, start_idp=False) as stack:
        status, body = await readyz(stack)
        assert status == 503 and body["identity_providers"] == "none loaded"  # names no company
        await stack.start_idp()
        async with aiohttp.ClientSession() as http:
            await http.get(f"{stack.gateway_url}/.auth/login/contoso/start", allow_redirects=False)
            await http.get(f"{stack.gateway_url}/.auth/login/fabrikam/start", allow_redirects=False)
        # discovery is fetched on demand; keys with the background refresh or the first token check
        async with stack.browser() as browser:
            await stack.login(browser, "contoso", ADELE.username)


async def test_metrics_count_requests_logins_upstream_errors_and_sessions(
    tmp_path: Path, refused_port: int
) -> None:
    dead = {
        "host": "127.0.0.1",
        "path": "/dead/",
        "upstream": f"http://127.0.0.1:{refused_port}",
        "auth": "public",
    }
    async with running_stack("memory", tmp_path, {}, routes_extra=[dead]) as stack:
        async with stack.browser() as browser, stack.browser() as other:
            await stack.login(browser, "contoso", ADELE.username)
            await stack.login(other, "contoso", ADELE.username)
            await stack.whoami(browser, "/")
            assert (await stack.whoami(browser, "/dead/x"))[0] == 502
        app = stack.runners[-1].app
        assert app is not None
        await app[RELOADER].sample_sessions()
        runner = await serve(metrics_app(app[METRICS]))
        host, port = runner.addresses[0][:2]
        try:
            async with aiohttp.ClientSession() as http, http.get(f"http://{host}:{port}/metrics") as resp:
                text = await resp.text()
        finally:
            await runner.cleanup()
        assert 'broker_logins_total{aadsts="",company="contoso",result="success"} 2.0' in text
        assert 'broker_http_requests_total{code="200",route="127.0.0.1/"}' in text
        assert 'broker_http_requests_total{code="502",route="127.0.0.1/dead/"} 1.0' in text
        assert 'broker_upstream_errors_total{kind="unreachable",route="127.0.0.1/dead/"} 1.0' in text
        assert 'broker_active_sessions{company="contoso"} 2.0' in text
        assert 'broker_http_request_duration_seconds_bucket{code="200",le="0.001",route="127.0.0.1/"}' in text
        assert 'broker_build_info{version="' in text and "process_resident_memory_bytes " in text
        assert "broker_config_last_reload_successful 1.0" in text


@pytest.fixture
async def slow_backend() -> AsyncIterator[str]:
    runner = await serve(create_demo_app("http://127.0.0.1:1/jwks", "http://x", None))
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


def write_config(tmp_path: Path, backend: str, gw_port: int, metrics_port: int, store: str) -> Path:
    key = tmp_path / "assertion.pem"
    key.write_bytes(generate_es256_pem())
    config = {
        "server": {
            "public_url": f"http://127.0.0.1:{gw_port}",
            "listen": f"127.0.0.1:{gw_port}",
            "workers": 2,
            "metrics_listen": f"127.0.0.1:{metrics_port}",
            "shutdown_timeout": "10s",
        },
        # Several workers need a shared store (memory is refused), and a Redis store its server key.
        "sessions": {"store": store, "secret_keys": [new_session_key()]},
        "signing": {"keys": [str(key)]},
        "tenants": {
            "contoso": {
                "display_name": "Contoso",
                "tenant_id": CONTOSO_TID,
                "client_id": CONTOSO_CLIENT,
                "client_secret": "unused",
                "authority": "http://127.0.0.1:1",  # unreachable: only public routes are used here
            }
        },
        "routes": [{"host": "127.0.0.1", "path": "/", "upstream": backend, "auth": "public"}],
    }
    path = tmp_path / "broker.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def test_broker_run_workers_metrics_sighup_and_graceful_shutdown(
    tmp_path: Path, slow_backend: str, redis_url: str
) -> None:
    # Held by the test while the workers join them (SO_REUSEPORT): nobody else can take them, and once the
    # workers stop, connections are refused.
    with HeldPort() as gw_held, HeldPort() as metrics_held:
        gw_port, metrics_port = gw_held.number, metrics_held.number
        config = write_config(tmp_path, slow_backend, gw_port, metrics_port, redis_url)
        broker = BrokerRun(config, tmp_path / "broker.log")
        broker.start()
        base = f"http://127.0.0.1:{gw_port}"
        try:
            await broker.serving(base)
            async with aiohttp.ClientSession() as http:
                for _ in range(20):  # fresh connections: SO_REUSEPORT hands them to either worker
                    async with (
                        aiohttp.ClientSession() as fresh,
                        fresh.get(f"{base}/_demo/status/200") as resp,
                    ):
                        assert resp.status == 200
                async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
                    metrics = await resp.text()
                assert "broker_http_requests_total{code=" in metrics

                assert broker.proc is not None
                broker.proc.send_signal(signal.SIGHUP)  # reload (the parent forwards it to both workers)
                await broker.wait_for_record("config reloaded", 2)

                in_flight = asyncio.create_task(http.get(f"{base}/_demo/slow?seconds=2"))
                await asyncio.sleep(0.5)
                broker.proc.send_signal(signal.SIGTERM)
                response = await in_flight
                assert response.status == 200  # the request in flight when SIGTERM arrived completed
                await response.read()
            assert await broker.wait(20) == 0
            output = broker.log.read_text()
            assert output.count('"shutting down') == 2 and output.count('"stopped"') == 2, output[-2000:]
            assert output.count('"config reloaded"') == 2, output[-2000:]
            with pytest.raises(aiohttp.ClientConnectionError):
                async with aiohttp.ClientSession() as http, http.get(f"{base}/.auth/healthz"):
                    pass
        finally:
            broker.kill()


def test_workers_tune_the_garbage_collector() -> None:
    """Workers freeze what start-up loaded and raise the young-generation threshold (see ``tune_gc``)."""
    code = (
        "import gc; from broker.server.serve import GC_THRESHOLDS, tune_gc; tune_gc(); "
        "assert gc.get_threshold() == GC_THRESHOLDS, gc.get_threshold(); "
        "assert gc.get_freeze_count() > 1000, gc.get_freeze_count()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

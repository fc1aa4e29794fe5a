"""The parent of ``broker run`` supervises its workers (issue 14): real processes, real signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest
import yaml

from demo import create_demo_app
from tests.ops.test_grafana_dashboard import MULTI_WORKER_ONLY, dashboard_metric_names, exported_names
from tests.support.broker_run import BrokerRun, broker_config
from tests.support.upstreams import serve_on

HOST = "127.0.0.1"


@contextmanager
def reserved_port(listening: bool = False) -> Iterator[int]:
    """A loopback port held by this test: with SO_REUSEPORT and not listening, the broker's workers can
    join it (and nobody else can take it); ``listening`` without SO_REUSEPORT, no worker can bind it."""
    with socket.socket() as sock:
        if not listening:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((HOST, 0))
        if listening:
            sock.listen()
        yield int(sock.getsockname()[1])


@pytest.fixture
async def backend() -> AsyncIterator[str]:
    """The whoami backend."""
    runner, url = await serve_on(create_demo_app("http://127.0.0.1:1/jwks", "http://unused", None))
    yield url
    await runner.cleanup()


async def answers(base: str, times: int = 10) -> list[int]:
    """Statuses of ``times`` requests, each on a fresh connection (SO_REUSEPORT spreads them)."""
    statuses = []
    for _ in range(times):
        async with aiohttp.ClientSession() as http, http.get(f"{base}/_demo/status/200") as resp:
            statuses.append(resp.status)
    return statuses


def worker_pids(broker: BrokerRun) -> list[int]:
    """Every worker that logged "gateway listening", in order."""
    return [int(r["pid"]) for r in broker.records() if r.get("msg") == "gateway listening"]


async def test_killed_workers_are_replaced_counted_and_sigterm_still_stops_all(
    tmp_path: Path, backend: str, redis_url: str
) -> None:
    """SIGKILL one worker: the exit is logged with its signal, a new worker is spawned and the gateway
    keeps answering; SIGKILL both: both come back. The exits are counted in the metrics. SIGTERM stops
    everything with exit 0, and the metrics directory the broker created is removed (none leaks)."""
    own_tmp = tmp_path / "tmp"
    own_tmp.mkdir()
    with reserved_port() as port, reserved_port() as metrics_port:
        config = broker_config(
            tmp_path, backend, f"{HOST}:{port}", redis_url, workers=2, metrics_listen=f"{HOST}:{metrics_port}"
        )
        broker = BrokerRun(config, tmp_path / "broker.log", env={"TMPDIR": str(own_tmp)})
        base = f"http://{HOST}:{port}"
        broker.start()
        try:
            await broker.wait_for_record("gateway listening", 2)
            await broker.serving(base)
            assert [p.name for p in own_tmp.iterdir()][0].startswith("broker-metrics-")
            first, second = worker_pids(broker)

            os.kill(first, signal.SIGKILL)
            exits = await broker.wait_for_record("worker killed by SIGKILL")
            assert exits[0]["pid"] == first and exits[0]["reason"] == "SIGKILL"
            await broker.wait_for_record("gateway listening", 3)
            replacement = worker_pids(broker)[2]
            assert replacement not in (first, second)
            assert await answers(base) == [200] * 10

            for pid in (second, replacement):
                os.kill(pid, signal.SIGKILL)
            await broker.wait_for_record("worker killed by SIGKILL", 3)
            await broker.wait_for_record("gateway listening", 5)
            await broker.serving(base)
            assert await answers(base) == [200] * 10
            assert len(set(worker_pids(broker))) == 5
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://{HOST}:{metrics_port}/metrics") as r,
            ):
                page = await r.text()
            assert 'broker_worker_exits_total{reason="SIGKILL"} 3.0' in page
            # The dashboard's panels only a multi-worker run feeds read series this page really has.
            assert (
                MULTI_WORKER_ONLY <= dashboard_metric_names() and MULTI_WORKER_ONLY <= exported_names(page)[0]
            )

            assert await broker.terminate() == 0
        finally:
            broker.kill()
    assert list(own_tmp.iterdir()) == []
    assert "Traceback" not in broker.log.read_text()


async def test_a_stopped_worker_is_killed_and_replaced_and_the_operators_metrics_dir_is_kept(
    tmp_path: Path, backend: str, redis_url: str
) -> None:
    """A SIGSTOPped worker stops beating: after ``worker_timeout`` the parent SIGKILLs and replaces it.
    A PROMETHEUS_MULTIPROC_DIR the operator set is used and left in place with its contents."""
    operator_dir = tmp_path / "metrics"
    operator_dir.mkdir()
    (operator_dir / "keep-me").write_text("the operator's")
    with reserved_port() as port:
        config = broker_config(tmp_path, backend, f"{HOST}:{port}", redis_url, workers=2, worker_timeout="2s")
        broker = BrokerRun(
            config, tmp_path / "broker.log", env={"PROMETHEUS_MULTIPROC_DIR": str(operator_dir)}
        )
        base = f"http://{HOST}:{port}"
        broker.start()
        try:
            await broker.wait_for_record("gateway listening", 2)
            await broker.serving(base)
            stopped = worker_pids(broker)[0]
            os.kill(stopped, signal.SIGSTOP)
            silent = await broker.wait_for_record("worker silent", timeout=10)
            assert silent[0]["pid"] == stopped
            await broker.wait_for_record("worker killed by SIGKILL")
            await broker.wait_for_record("gateway listening", 3)
            assert await answers(base) == [200] * 10
            assert await broker.terminate() == 0
        finally:
            broker.kill()
    assert (operator_dir / "keep-me").read_text() == "the operator's"
    assert any(p.name.endswith(".db") for p in operator_dir.iterdir())


async def test_workers_that_keep_dying_at_start_up_make_the_parent_give_up(
    tmp_path: Path, backend: str, redis_url: str
) -> None:
    """The port is taken by another program, so every worker dies before serving: after
    ``MAX_START_FAILURES`` in a row (with back-off) the parent says so and exits 1."""
    with reserved_port(listening=True) as port:
        config = broker_config(tmp_path, backend, f"{HOST}:{port}", redis_url, workers=2)
        broker = BrokerRun(config, tmp_path / "broker.log")
        broker.start()
        try:
            assert await broker.wait(timeout=30) == 1
        finally:
            broker.kill()
    messages = [str(r.get("msg")) for r in broker.records()]
    assert "workers keep dying before they serve: giving up" in messages
    assert sum(m.startswith("worker failed: [Errno 98]") for m in messages) >= 5
    assert sum(m == "worker exited with status 1; replacing it" for m in messages) >= 4


async def test_a_replacement_worker_serves_the_reloaded_config(
    tmp_path: Path, backend: str, redis_url: str
) -> None:
    """After a reload, a worker that replaces a dead one serves the reloaded config, not the one the parent
    started with (which would bring a removed route, or an old policy, back on a share of connections)."""
    with reserved_port() as port:
        config = broker_config(tmp_path, backend, f"{HOST}:{port}", redis_url, workers=2)
        broker = BrokerRun(config, tmp_path / "broker.log")
        base = f"http://{HOST}:{port}"
        broker.start()
        try:
            await broker.wait_for_record("gateway listening", 2)
            await broker.serving(base)
            raw = yaml.safe_load(config.read_text())
            raw["routes"][0]["path"] = "/moved/"  # "/" is no longer routed: 404 there once reloaded
            config.write_text(yaml.safe_dump(raw))
            assert broker.proc is not None
            broker.proc.send_signal(signal.SIGHUP)
            await broker.wait_for_record("config reloaded", 2)
            assert await answers(base) == [404] * 10
            os.kill(worker_pids(broker)[0], signal.SIGKILL)
            await broker.wait_for_record("gateway listening", 3)
            assert await answers(base, 20) == [404] * 20
            assert await broker.terminate() == 0
        finally:
            broker.kill()


STARTING_FOREVER = """
import sys, time
from broker.server.supervisor import Supervisor

# Workers that never finish starting: no heartbeat, and SIGTERM still at its default (it kills them).
supervisor = Supervisor(lambda beats: time.sleep(60) or 0, 2, worker_timeout=60, shutdown_timeout=10)
print("supervising", flush=True)
sys.exit(supervisor.run())
"""


def test_sigterm_while_the_workers_are_still_starting_is_a_clean_stop() -> None:
    """``broker run`` stopped before its workers serve (a deploy rolled back at once, a test that stops
    early): the workers die of the SIGTERM the parent forwards, having served nothing, and the exit is 0;
    a failure would page someone for a stop they asked for."""
    proc = subprocess.Popen(
        [sys.executable, "-c", STARTING_FOREVER], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"supervising\n"
        time.sleep(0.5)  # the workers are forked and "starting"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, proc.stdout.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

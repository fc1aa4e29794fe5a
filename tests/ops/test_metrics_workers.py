"""Metrics of ``broker run`` with two workers (issue 18): a reload counted once, the broken-file gauge,
build info and per-worker process metrics, scraped from the real metrics listener."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from demo import create_demo_app
from tests.support.broker_run import BrokerRun, broker_config
from tests.support.ports import HeldPort
from tests.support.upstreams import serve_on

HOST = "127.0.0.1"


@pytest.fixture
async def backend() -> AsyncIterator[str]:
    """The whoami backend."""
    runner, url = await serve_on(create_demo_app("http://127.0.0.1:1/jwks", "http://unused", None))
    yield url
    await runner.cleanup()


async def scrape(port: int) -> str:
    """The metrics page (whichever worker the connection lands on: the page aggregates both)."""
    async with aiohttp.ClientSession() as http, http.get(f"http://{HOST}:{port}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


def value(text: str, series: str) -> float | None:
    """The value of one exact series line, or None."""
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


async def eventually_scraped(port: int, series: str, expected: float, timeout: float = 10.0) -> str:
    """Scrape until ``series`` reads ``expected``; the page."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = await scrape(port)
        if value(text, series) == expected:
            return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"{series} never {expected}:\n{text}")


async def test_two_workers_count_a_reload_once_and_flag_a_broken_file(
    tmp_path: Path, backend: str, redis_url: str
) -> None:
    with HeldPort() as gw, HeldPort() as metrics_port:
        config = broker_config(
            tmp_path,
            backend,
            f"{HOST}:{gw.number}",
            redis_url,
            workers=2,
            metrics_listen=f"{HOST}:{metrics_port.number}",
        )
        broker = BrokerRun(config, tmp_path / "broker.log")
        broker.start()
        try:
            workers = [int(r["pid"]) for r in await broker.wait_for_record("gateway listening", 2)]
            await broker.serving(f"http://{HOST}:{gw.number}")
            text = await scrape(metrics_port.number)
            assert value(text, 'broker_build_info{version="0.1.0"}') == 1.0
            assert value(text, "broker_config_last_reload_successful") == 1.0
            started = value(text, "broker_config_last_reload_success_timestamp_seconds")
            assert started is not None and abs(started - time.time()) < 60
            for pid in workers:  # each worker's own process metrics, by pid
                assert (value(text, f'process_resident_memory_bytes{{pid="{pid}"}}') or 0) > 1_000_000
                assert value(text, f'process_open_fds{{pid="{pid}"}}') is not None

            assert broker.proc is not None
            broker.proc.send_signal(signal.SIGHUP)  # forwarded to both workers: both reload
            await broker.wait_for_record("config reloaded", 2)
            await eventually_scraped(metrics_port.number, 'broker_config_reloads_total{result="ok"}', 1.0)
            await asyncio.sleep(0.5)  # a second count, had there been one, would show by now
            text = await scrape(metrics_port.number)
            assert value(text, 'broker_config_reloads_total{result="ok"}') == 1.0
            assert (value(text, "broker_config_last_reload_success_timestamp_seconds") or 0) > (started or 0)

            good = config.read_text()
            config.write_text(good + "\nnot: [valid\n")  # both workers see the file change
            await broker.wait_for_record("keeping the running config", 2)
            text = await eventually_scraped(metrics_port.number, "broker_config_last_reload_successful", 0.0)
            assert value(text, 'broker_config_reloads_total{result="error"}') == 1.0

            config.write_text(good)
            await eventually_scraped(metrics_port.number, "broker_config_last_reload_successful", 1.0)
            assert await broker.terminate() == 0
        finally:
            broker.kill()

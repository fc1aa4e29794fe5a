"""Slow and idle client connections are bounded (issue 12): ``broker run`` as a real process, real sockets.

The gateway runs with ``header_timeout: 1s``, ``keepalive_timeout: 4s`` and ``max_connections: 40``, so
each bound is seen acting well before the other one could have closed the same connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from demo import create_demo_app
from tests.support.broker_run import BrokerRun, broker_config
from tests.support.upstreams import serve_on

HOST = "127.0.0.1"
HEADER_TIMEOUT = 1.0
KEEPALIVE_TIMEOUT = 4.0
MAX_CONNECTIONS = 40
REQUEST_HEAD = b"GET /_demo/status/200 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 64 + b"\r\n\r\n"


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[int]:
    """``broker run`` (one worker) in front of the whoami backend; yields the gateway's port."""
    runner, backend = await serve_on(create_demo_app("http://127.0.0.1:1/jwks", "http://unused", None))
    config = broker_config(
        tmp_path,
        backend,
        f"{HOST}:0",
        header_timeout=f"{HEADER_TIMEOUT:g}s",
        keepalive_timeout=f"{KEEPALIVE_TIMEOUT:g}s",
        max_connections=MAX_CONNECTIONS,
    )
    broker = BrokerRun(config, tmp_path / "broker.log")
    broker.start()
    try:
        port = int((await broker.wait_for_record("gateway listening"))[0]["port"])
        await broker.serving(f"http://{HOST}:{port}")
        yield port
        assert await broker.terminate() == 0
    finally:
        broker.kill()
        await runner.cleanup()


async def is_closed(reader: asyncio.StreamReader, within: float = 0.2) -> bool:
    """Has the server closed (or reset) this connection? (Reads what is left, waits at most ``within``.)"""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
        return True
    except TimeoutError:
        return False
    except ConnectionError:  # reset, or a broken pipe seen by the trickling writer first
        return True


async def trickle(writer: asyncio.StreamWriter, stop: asyncio.Event) -> None:
    """Send the request head one byte every 0.2 s (it would take 20 s to complete)."""
    for byte in REQUEST_HEAD:
        if stop.is_set() or writer.is_closing():
            return
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(0.2)


async def get_status(port: int) -> int:
    """One request on a fresh connection."""
    async with aiohttp.ClientSession() as http, http.get(f"http://{HOST}:{port}/_demo/status/200") as resp:
        return resp.status


async def test_trickling_and_silent_connections_are_closed_after_the_header_timeout(gateway: int) -> None:
    """15 connections trickle a request head a byte at a time and 10 send nothing: all 25 are closed
    after ``header_timeout`` (1 s), long before the keep-alive timer (4 s) would have; a real client is
    served throughout."""
    stop = asyncio.Event()
    trickling = [await asyncio.open_connection(HOST, gateway) for _ in range(15)]
    silent = [await asyncio.open_connection(HOST, gateway) for _ in range(10)]
    opened = time.monotonic()
    senders = [asyncio.create_task(trickle(writer, stop)) for _, writer in trickling]
    try:
        await asyncio.sleep(HEADER_TIMEOUT * 0.5)
        early = [await is_closed(r, 0.01) for r, _ in trickling + silent]
        assert not any(early), early  # not closed at once
        assert await get_status(gateway) == 200
        await asyncio.sleep(HEADER_TIMEOUT + 0.6 - (time.monotonic() - opened))
        still_open = [not await is_closed(r, 0.05) for r, _ in trickling + silent]
        assert time.monotonic() - opened < KEEPALIVE_TIMEOUT  # the header timeout did it, not keep-alive
        assert sum(still_open) == 0, f"{sum(still_open)} of 25 slow connections still open"
        assert await get_status(gateway) == 200
    finally:
        stop.set()
        await asyncio.gather(*senders)
        for _, writer in trickling + silent:
            writer.close()


async def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout(gateway: int) -> None:
    """After an answer, a kept-alive connection that sends nothing more is closed after
    ``keepalive_timeout`` (aiohttp's default kept it an hour); the header timeout does not cut it before."""
    reader, writer = await asyncio.open_connection(HOST, gateway)
    try:
        writer.write(REQUEST_HEAD)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        answered = time.monotonic()
        await asyncio.sleep(HEADER_TIMEOUT + 0.5)
        assert not await is_closed(reader, 0.05)
        assert await is_closed(reader, KEEPALIVE_TIMEOUT + 1.5)
        assert time.monotonic() - answered >= KEEPALIVE_TIMEOUT - 0.5
    finally:
        writer.close()


async def test_at_the_connection_cap_a_new_client_is_served(gateway: int) -> None:
    """With ``max_connections`` silent connections open, a new client is still served: the oldest silent
    connection is closed to make room for it."""
    silent = [await asyncio.open_connection(HOST, gateway) for _ in range(MAX_CONNECTIONS)]
    try:
        assert await get_status(gateway) == 200
        assert await is_closed(silent[0][0], 0.3)  # the oldest one made room
        assert not await is_closed(silent[-1][0], 0.01)
    finally:
        for _, writer in silent:
            writer.close()


async def test_a_long_download_and_a_slow_steady_upload_are_not_cut(gateway: int) -> None:
    """A download read slowly and an upload sent 1 KiB every 0.25 s both last longer than the header and
    keep-alive timeouts together (5 s), and complete."""
    base = f"http://{HOST}:{gateway}"
    size = 4 * 1024 * 1024

    async def upload_body() -> AsyncIterator[bytes]:
        for _ in range(24):
            yield b"u" * 1024
            await asyncio.sleep(0.25)

    async def download(http: aiohttp.ClientSession) -> int:
        received = 0
        async with http.get(f"{base}/_demo/bytes", params={"n": str(size)}) as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_chunked(16 * 1024):
                received += len(chunk)
                await asyncio.sleep(0.02)  # 256 chunks: about 5-6 s
        return received

    async def upload(http: aiohttp.ClientSession) -> int:
        async with http.post(
            f"{base}/up", data=upload_body(), headers={"Accept": "application/json"}
        ) as resp:
            assert resp.status == 200
            return int((await resp.json())["body_bytes"])

    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        assert await asyncio.gather(download(http), upload(http)) == [size, 24 * 1024]
    assert time.monotonic() - started > HEADER_TIMEOUT + KEEPALIVE_TIMEOUT

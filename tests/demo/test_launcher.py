"""``make demo`` serves through the same connection guard as ``broker run``: a silent client is closed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from broker.config.load import load_config
from demo import create_demo_app
from demo.launcher import BACKEND_PORT, serve
from tests.security.test_slow_clients import is_closed
from tests.support.broker_run import broker_config

HOST = "127.0.0.1"
HEADER_TIMEOUT = 0.5


async def test_the_demo_closes_a_client_that_never_sends_its_request_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_CONTOSO_SECRET", "x")
    monkeypatch.setenv("TEST_FABRIKAM_SECRET", "x")
    config = load_config(
        broker_config(tmp_path, "http://127.0.0.1:1", f"{HOST}:0", header_timeout=f"{HEADER_TIMEOUT:g}s")
    )
    backend = create_demo_app("http://127.0.0.1:1/jwks", "http://unused", None)
    runner, site = await serve(backend, config, BACKEND_PORT, 0, HOST)
    try:
        port = site.port
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            assert not await is_closed(reader, within=HEADER_TIMEOUT / 5)  # open at first ...
            assert await is_closed(reader, within=HEADER_TIMEOUT + 2.0)  # ... closed by the header timeout
        finally:
            writer.close()
        async with aiohttp.ClientSession() as http, http.get(f"http://{HOST}:{port}/_demo/status/200") as r:
            assert r.status == 200  # a client that does send its request is served
    finally:
        await runner.cleanup()

"""Upstreams over https (own CA, no verification, client certificates) and over a unix socket."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from broker.errors import ConfigError
from tests.support.certs import TestCA
from tests.support.stack import running_stack
from tests.support.upstreams import Recorder, recording_app, serve_on, server_context

JSON = {"Accept": "application/json"}


@dataclass
class TlsSetup:
    """A CA, an unrelated CA, and https upstreams signed by the first (one requiring client certificates)."""

    ca: TestCA
    other_ca: TestCA
    client: Any
    url: str
    mutual_url: str
    recorder: Recorder


@pytest.fixture
async def tls(tmp_path: Path) -> AsyncIterator[TlsSetup]:
    ca, other_ca = TestCA(tmp_path, "Upstream CA"), TestCA(tmp_path, "Unrelated CA")
    server = ca.issue("upstream-server")
    client = ca.issue("broker-client", client=True)
    app, recorder = recording_app()
    runner, url = await serve_on(app, ssl_context=server_context(server))
    mutual_app, _ = recording_app()
    mutual_runner, mutual_url = await serve_on(mutual_app, ssl_context=server_context(server, client_ca=ca))
    try:
        yield TlsSetup(ca, other_ca, client, url, mutual_url, recorder)
    finally:
        await runner.cleanup()
        await mutual_runner.cleanup()


def tls_routes(setup: TlsSetup) -> list[dict[str, Any]]:
    """One public route per way of trusting (or not) the upstream."""

    def route(path: str, upstream: str, tls: dict[str, Any] | None) -> dict[str, Any]:
        entry: dict[str, Any] = {"host": "127.0.0.1", "path": path, "upstream": upstream, "auth": "public"}
        return entry | {"strip_prefix": True} | ({"tls": tls} if tls is not None else {})

    return [
        route("/own-ca/", setup.url, {"ca_file": str(setup.ca.files.cert_file)}),
        route("/wrong-ca/", setup.url, {"ca_file": str(setup.other_ca.files.cert_file)}),
        route("/system-ca/", setup.url, None),
        route("/no-verify/", setup.url, {"verify": False}),
        route(
            "/mutual/",
            setup.mutual_url,
            {
                "ca_file": str(setup.ca.files.cert_file),
                "cert_file": str(setup.client.cert_file),
                "key_file": str(setup.client.key_file),
            },
        ),
        route("/mutual-no-cert/", setup.mutual_url, {"ca_file": str(setup.ca.files.cert_file)}),
    ]


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as client:
        async with client.get(url, headers=JSON) as resp:
            return resp.status, await resp.json()


async def test_https_upstreams(tls: TlsSetup, tmp_path: Path) -> None:
    async with running_stack("memory", tmp_path, {}, routes_extra=tls_routes(tls)) as stack:
        status, body = await get(f"{stack.gateway_url}/own-ca/x")
        assert status == 200 and body["raw_path_qs"] == "/x"

        status, body = await get(f"{stack.gateway_url}/no-verify/x")
        assert status == 200

        for path in ("/wrong-ca/x", "/system-ca/x"):
            status, body = await get(f"{stack.gateway_url}{path}")
            assert status == 502, path
            assert body["error"] == "upstream_tls" and body["request_id"]
            assert "certificate" in body["message"]

        status, body = await get(f"{stack.gateway_url}/mutual/x")
        assert status == 200 and body["client_cert_cn"] == "broker-client"

        status, body = await get(f"{stack.gateway_url}/mutual-no-cert/x")
        assert status == 502
    # Only the requests that passed verification reached the upstream.
    assert [seen.raw_path_qs for seen in tls.recorder.requests] == ["/x", "/x"]


async def test_unusable_tls_files_stop_start_up(tmp_path: Path) -> None:
    route = {"host": "127.0.0.1", "path": "/tls/", "upstream": "https://127.0.0.1:1"}
    route |= {"tls": {"ca_file": "missing-ca.pem"}}
    with pytest.raises(ConfigError) as caught:
        async with running_stack("memory", tmp_path, {}, routes_extra=[route]):
            pass
    assert "routes[3].tls" in str(caught.value) and "cannot load TLS files" in str(caught.value)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory for unix sockets (their paths are limited to about 100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="brk-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_unix_socket_upstream(tmp_path: Path, socket_dir: Path) -> None:
    app, recorder = recording_app()
    runner, upstream = await serve_on(app, unix_path=socket_dir / "app.sock")
    routes = [
        {"host": "127.0.0.1", "path": "/sock/", "upstream": upstream, "auth": "public", "strip_prefix": True}
    ]
    try:
        async with running_stack("memory", tmp_path, {}, routes_extra=routes) as stack:
            status, body = await get(f"{stack.gateway_url}/sock/page?q=1")
            assert status == 200 and body["raw_path_qs"] == "/page?q=1"
            await runner.cleanup()
            status, body = await get(f"{stack.gateway_url}/sock/page")
            assert status == 502 and body["error"] == "upstream_unreachable"
    finally:
        await runner.cleanup()
    assert recorder.last.header("Host") == ["localhost"]

"""The whole product plus a recording upstream, with routes for each proxying behaviour under test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.stack import Stack, running_stack
from tests.support.upstreams import Recorder, recording_app, serve_on

LIMIT = 1024 * 1024  # max_body of /up/
HOST = "127.0.0.1"


def route(path: str, upstream: str, **options: Any) -> dict[str, Any]:
    """A route on the stack's host."""
    return {"host": HOST, "path": path, "upstream": upstream, **options}


def proxy_routes(upstream: str, dead: str) -> list[dict[str, Any]]:
    """Routes each exercising one proxy option (``/`` and ``/open/`` come with the stack)."""
    backend = "{backend_url}"
    contoso = {"login_codes": ["contoso"]}
    return [
        route("/up/", upstream, auth="public", strip_prefix=True, max_body=LIMIT, idle_timeout=0.3),
        route(
            "/secure/",
            upstream,
            strip_prefix=True,
            allow=contoso,
            headers={"X-Remote-User": "preferred_username"},
        ),
        route("/fabrikam-ws/", upstream, strip_prefix=True, allow={"login_codes": ["fabrikam"]}),
        route("/nows/", upstream, auth="public", strip_prefix=True, websockets=False),
        route("/down/", dead, auth="public"),
        route("/slowapp/", backend, auth="public", strip_prefix=True, read_timeout=0.5),
        route("/wiki/", backend, auth="public", strip_prefix=True),
        route("/rw/", backend, auth="public", rewrite="/base/"),
        route("/host/", backend, auth="public", preserve_host=True),
    ]


@dataclass
class Proxied:
    """A running stack with the proxy routes, and what the recording upstream saw."""

    stack: Stack
    recorder: Recorder

    def url(self, path: str) -> str:
        """A URL on the gateway."""
        return self.stack.gateway_url + path


@pytest.fixture
async def proxied(tmp_path: Path, refused_port: int) -> AsyncIterator[Proxied]:
    """Dev IdP, whoami, the recording upstream and a gateway routing to them (memory sessions)."""
    app, recorder = recording_app()
    runner, upstream = await serve_on(app)
    dead = f"http://{HOST}:{refused_port}"
    try:
        async with running_stack("memory", tmp_path, {}, routes_extra=proxy_routes(upstream, dead)) as stack:
            yield Proxied(stack, recorder)
    finally:
        await runner.cleanup()

"""The whole product plus a recording upstream, for abuse cases that must prove what reached the backend."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SpanExporter

from tests.support.stack import Stack, running_stack
from tests.support.upstreams import Recorder, recording_app, serve_on

HOST = "127.0.0.1"


@dataclass
class Target:
    """A running stack whose ``/rec/`` (public) and ``/recsecure/`` (contoso only) go to a recorder."""

    stack: Stack
    recorder: Recorder

    @property
    def port(self) -> int:
        """The gateway's port."""
        return int(self.stack.gateway_url.rsplit(":", 1)[1])

    def paths_seen(self) -> list[str]:
        """Every raw path the recording upstream received, in order."""
        return [seen.raw_path_qs for seen in self.recorder.requests]

    async def raw(self, data: bytes, timeout: float = 3.0) -> bytes:
        """Send bytes on one connection as they are; return everything answered until the server closes
        (or ``timeout``)."""
        reader, writer = await asyncio.open_connection(HOST, self.port)
        try:
            writer.write(data)
            await writer.drain()
            chunks: list[bytes] = []
            try:
                async with asyncio.timeout(timeout):
                    while chunk := await reader.read(65536):
                        chunks.append(chunk)
            except TimeoutError:
                pass
            return b"".join(chunks)
        finally:
            writer.close()


RECORDER_URL = "{recorder}"
# Which session store the attack stack runs on: "memory" (the default, what CI runs: the abuse cases are
# about the gateway's decisions) or "redis" (the same attacks against a real redis-server, as deployed).
ATTACK_STORE = "BROKER_ATTACK_STORE"


@pytest.fixture
def attack_store(request: pytest.FixtureRequest) -> str:
    """``memory``, or the URL of a freshly emptied real Redis when ``BROKER_ATTACK_STORE=redis``."""
    choice = os.environ.get(ATTACK_STORE, "memory")
    if choice == "memory":
        return choice
    if choice == "redis":
        url: str = request.getfixturevalue("fresh_redis_url")
        return url
    raise pytest.UsageError(f"{ATTACK_STORE} must be memory or redis, not {choice!r}")


@pytest.fixture
async def target(tmp_path: Path, attack_store: str) -> AsyncIterator[Target]:
    """The attack stack on the store ``BROKER_ATTACK_STORE`` names (memory by default)."""
    async with running_target(tmp_path, store=attack_store) as running:
        yield running


@asynccontextmanager
async def running_target(
    tmp_path: Path,
    server: dict[str, Any] | None = None,
    routes_more: Sequence[dict[str, Any]] = (),
    store: str = "memory",
    tracing: dict[str, Any] | None = None,
    span_exporter: SpanExporter | None = None,
) -> AsyncIterator[Target]:
    """The ``target`` stack; ``server`` overrides keys of the server section, ``routes_more`` adds routes
    whose ``upstream`` is ``{recorder}`` (the recording upstream's URL); ``store`` is the session store
    (``memory`` or a Redis URL: the ``attack_store`` fixture); ``tracing`` is the tracing section, its
    spans handed to ``span_exporter``."""
    app, recorder = recording_app()
    runner, upstream = await serve_on(app)
    routes: list[dict[str, Any]] = [
        {"host": HOST, "path": "/rec/", "upstream": upstream, "auth": "public"},
        {
            "host": HOST,
            "path": "/recsecure/",
            "upstream": upstream,
            "allow": {"login_codes": ["contoso"]},
            "headers": {"X-Remote-User": "preferred_username"},
        },
    ]
    routes += [{**r, "upstream": str(r["upstream"]).replace(RECORDER_URL, upstream)} for r in routes_more]
    try:
        async with running_stack(
            store,
            tmp_path,
            {},
            routes_extra=routes,
            server=server,
            tracing=tracing,
            span_exporter=span_exporter,
        ) as stack:
            yield Target(stack, recorder)
    finally:
        await runner.cleanup()

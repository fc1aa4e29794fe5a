"""Prometheus metrics, served on their own listen address (``server.metrics_listen``).

Each gateway app has its own registry (no module-level state; tests run several gateways in one process).
With several worker processes, ``broker run`` sets PROMETHEUS_MULTIPROC_DIR and the metrics endpoint
aggregates every worker through prometheus-client's multiprocess collector.
Label values are bounded by the config (route names, login codes, AADSTS codes), never by user input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class Metrics:
    """Every metric the gateway exports."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("broker_requests_total", "Requests answered", ["route", "status"], registry=r)
        self.latency = Histogram(
            "broker_request_seconds",
            "Time to answer (headers sent)",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "broker_upstream_errors_total", "Upstream failures", ["route", "kind"], registry=r
        )
        self.logins = Counter(
            "broker_logins_total",
            "Sign-ins by company and result",
            ["company", "result", "aadsts"],
            registry=r,
        )
        self.refreshes = Counter(
            "broker_refreshes_total", "Session refreshes", ["company", "result"], registry=r
        )
        # Counted where each store operation fails (``StoreHealth``), by operation (read, write, take,
        # delete, lock, unlock, lock extend, publish, ping): a failed write with working reads is a full
        # Redis, and a failed last-seen write is counted here even though its request was served.
        self.store_errors = Counter(
            "broker_session_store_errors_total", "Failed session store operations", ["operation"], registry=r
        )
        self.active_sessions = Gauge(
            "broker_active_sessions",
            "Sessions listed per company",
            ["company"],
            registry=r,
            multiprocess_mode="max",
        )
        self.config_reloads = Counter("broker_config_reloads_total", "Config reloads", ["result"], registry=r)
        self._answered: dict[tuple[str, int], tuple[Any, Any]] = {}

    def answered(self, route: str, status: int, seconds: float) -> None:
        """Count one answer and its time. The labelled children are looked up once per (route, status):
        ``labels()`` takes a lock and builds a key on every call, and this runs on every request."""
        children = self._answered.get((route, status))
        if children is None:
            children = (self.requests.labels(route, str(status)), self.latency.labels(route))
            self._answered[(route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> bytes:
        """The text format, aggregated over worker processes when running several."""
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(registry))
        return bytes(generate_latest(self.registry))


METRICS = web.AppKey("metrics", Metrics)


def metrics_app(metrics: Metrics) -> web.Application:
    """The small app behind ``server.metrics_listen``: ``GET /metrics``."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    return app

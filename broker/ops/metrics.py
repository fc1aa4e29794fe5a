"""Prometheus metrics, served on their own listen address (``server.metrics_listen``).

Names follow Prometheus' conventions (base units, ``_total`` counters, ``code`` for the HTTP status,
``*_build_info``, ``*_last_reload_success_timestamp_seconds`` as Prometheus itself exports).
Each gateway app has its own registry (no module-level state; tests run several gateways in one process).
With several worker processes, ``broker run`` sets PROMETHEUS_MULTIPROC_DIR and the metrics endpoint
aggregates every worker through prometheus-client's multiprocess collector (``multiprocess.py``: an event
all workers see counted once, process metrics per worker).
Label values are bounded by the config (route names, login codes, AADSTS codes) or by the protocol (status
codes), never by free user input.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from broker import __version__
from broker.ops.multiprocess import ProcessGauges, SoleReporter, multiprocess_dir
from broker.ops.tasks import cancel_and_wait, sleep_unless

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# How often each worker copies its process metrics into the shared directory (and at every scrape it serves).
PROCESS_SAMPLE_INTERVAL = 10.0


@dataclass
class Metrics:
    """Every metric the gateway exports."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        # No ``*_created`` series: one extra series per counter and histogram child that dashboards never
        # read (OpenMetrics' creation time; Prometheus itself derives resets). The switch is the library's
        # process-wide one, so it is set before any metric of this registry is made.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        r = self.registry
        self.directory = multiprocess_dir()
        self.requests = Counter(
            "broker_http_requests_total",
            "Requests answered, by route and HTTP status",
            ["route", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "broker_http_request_duration_seconds",
            "Time to answer (until the answer's headers are sent), by route and HTTP status",
            ["route", "code"],
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
        # A reload happens in every worker (SIGHUP is forwarded to each, each watches the file): only the
        # elected one counts it, so one reload is one increment of the aggregate.
        self.config_reloads = Counter(
            "broker_config_reloads_total", "Config reloads, by result (ok, error)", ["result"], registry=r
        )
        self.reload_reporter = SoleReporter(self.directory)
        self.last_reload_success = Gauge(
            "broker_config_last_reload_success_timestamp_seconds",
            "When the running config was last loaded successfully (start-up or reload), unix seconds",
            registry=r,
            multiprocess_mode="max",
        )
        # 0 while the file on disk is broken and the last good config is serving (Prometheus' own
        # prometheus_config_last_reload_successful); the lowest live worker's value, so any one is enough.
        self.last_reload_successful = Gauge(
            "broker_config_last_reload_successful",
            "1 when the config file's last load succeeded; 0 when it is broken and the last good one serves",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.build_info = Gauge(
            "broker_build_info",
            "The running gateway's version (always 1)",
            ["version"],
            registry=r,
            multiprocess_mode="max",
        )
        self.build_info.labels(__version__).set(1)
        if self.directory is None:
            ProcessCollector(registry=r)  # process_* read from /proc/self at each scrape
            self.process: ProcessGauges | None = None
        else:
            self.process = ProcessGauges(r)  # per worker, copied into the shared directory
        self.config_loaded(time.time())
        self._answered: dict[tuple[str, int], tuple[Any, Any]] = {}

    def answered(self, route: str, status: int, seconds: float) -> None:
        """Count one answer and its time. The labelled children are looked up once per (route, status):
        ``labels()`` takes a lock and builds a key on every call, and this runs on every request."""
        children = self._answered.get((route, status))
        if children is None:
            code = str(status)
            children = (self.requests.labels(route, code), self.latency.labels(route, code))
            self._answered[(route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def config_loaded(self, now: float) -> None:
        """The config (at start-up, or a reload) loaded and is serving."""
        self.last_reload_success.set(now)
        self.last_reload_successful.set(1)

    def reload_done(self, ok: bool, now: float) -> None:
        """One reload's outcome: the gauges in every worker, the counter by the elected one only."""
        if ok:
            self.config_loaded(now)
        else:
            self.last_reload_successful.set(0)
        if self.reload_reporter.elected():
            self.config_reloads.labels("ok" if ok else "error").inc()

    def exposition(self) -> bytes:
        """The text format, aggregated over worker processes when running several."""
        if self.directory:
            if self.process is not None:
                self.process.sample()  # this worker's figures as of now; the others' as of their last sample
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.directory)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(registry))
        return bytes(generate_latest(self.registry))

    async def sample_process_forever(self, stop: asyncio.Event) -> None:
        """With several workers: copy this worker's process metrics every ``PROCESS_SAMPLE_INTERVAL``."""
        if self.process is None:
            return
        while True:
            self.process.sample()
            if await sleep_unless(stop, PROCESS_SAMPLE_INTERVAL):
                return


METRICS = web.AppKey("metrics", Metrics)


def metrics_app(metrics: Metrics) -> web.Application:
    """The small app behind ``server.metrics_listen``: ``GET /metrics``."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def sampling(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(metrics.sample_process_forever(stop), name="process-metrics")
        yield
        stop.set()
        await cancel_and_wait([task])

    app = web.Application()
    app.router.add_get("/metrics", handler)
    app.cleanup_ctx.append(sampling)
    return app

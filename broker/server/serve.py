"""``broker run``: serve the gateway with N worker processes, uvloop, metrics, and graceful shutdown.

- ``server.workers`` > 1 forks that many processes that all listen on the port (SO_REUSEPORT: the kernel
  spreads connections); the parent supervises them (``broker/server/supervisor.py``: replaced when they die or
  hang, signals forwarded).
- Client connections are bounded (``broker/server/connection_limits.py``: header timeout, per-worker cap) and
  idle ones closed after ``server.keepalive_timeout``.
- SIGTERM / SIGINT: stop accepting, let in-flight requests finish for up to ``server.shutdown_timeout``.
- ``server.metrics_listen``: Prometheus ``/metrics`` on its own address (aggregated over workers).
- SIGHUP reloads the config (validated in full; a bad file keeps the running config).
- uvloop is used when installed (it is a dependency on Linux).
- The garbage collector is tuned for a server (``tune_gc``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import shutil
import signal
from pathlib import Path

from aiohttp import web
from prometheus_client import Counter
from prometheus_client.multiprocess import mark_process_dead

from broker.app import create_app
from broker.config.load import load_config
from broker.config.schema import BrokerConfig
from broker.errors import ConfigError
from broker.grammar.host import split_listen
from broker.ops.logging import LogPipeline
from broker.ops.metrics import METRICS, metrics_app
from broker.ops.tasks import new_event_loop
from broker.reload import reload_config
from broker.server.connection_limits import ConnectionLimits, GuardedTCPSite
from broker.server.supervisor import Heartbeat, Supervisor, WorkerBody

log = logging.getLogger(__name__)


def connection_limits(config: BrokerConfig) -> ConnectionLimits:
    """The client connection bounds ``server`` configures (aiohttp's keep-alive timer is the third)."""
    return ConnectionLimits(
        header_timeout=config.server.header_timeout, max_connections=config.server.max_connections
    )


async def serve_guarded(
    app: web.Application, config: BrokerConfig, host: str, port: int, *, reuse_port: bool = False
) -> tuple[web.AppRunner, GuardedTCPSite]:
    """Serve ``app`` on ``host:port`` with the connection bounds ``config`` sets (header timeout, cap,
    keep-alive): ``broker run`` and ``make demo`` alike, so a slow client is bounded wherever it connects."""
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=config.server.shutdown_timeout,
        # Idle between requests; aiohttp's timer also closes a connection whose next request head has not
        # completed this long after the last answer (its default, an hour, kept silent sockets open).
        keepalive_timeout=config.server.keepalive_timeout,
    )
    await runner.setup()
    site = GuardedTCPSite(runner, host, port, connection_limits(config), reuse_port=reuse_port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site


async def serve_until_stopped(
    config: BrokerConfig,
    config_path: Path,
    listen: str,
    *,
    reuse_port: bool,
    heartbeat_fd: int | None = None,
) -> None:
    """Run one worker: the gateway (and metrics) until SIGTERM/SIGINT, then shut down gracefully.

    SIGHUP reloads the config file (which is also watched for changes). With ``heartbeat_fd`` (a worker of
    the supervisor) it beats once serving and every second after.
    """
    app = create_app(config, config_path.parent, config_path=config_path)
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=config.server.shutdown_timeout,
        # Idle between requests; aiohttp's timer also closes a connection whose next request head has not
        # completed this long after the last answer (its default, an hour, kept silent sockets open).
        keepalive_timeout=config.server.keepalive_timeout,
    )
    await runner.setup()
    host, port = split_listen(listen)
    site = GuardedTCPSite(runner, host, port, connection_limits(config), reuse_port=reuse_port)
    await site.start()
    metrics_runner = None
    if config.server.metrics_listen:
        metrics_runner = web.AppRunner(
            metrics_app(app[METRICS]), access_log=None, keepalive_timeout=config.server.keepalive_timeout
        )
        await metrics_runner.setup()
        m_host, m_port = split_listen(config.server.metrics_listen)
        await GuardedTCPSite(
            metrics_runner, m_host, m_port, connection_limits(config), reuse_port=reuse_port
        ).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[bool]] = set()

    def on_sighup() -> None:
        task = asyncio.create_task(reload_config(app))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    heartbeat = None if heartbeat_fd is None else Heartbeat(heartbeat_fd, loop, stop.set)
    log.info("gateway listening", extra={"listen": listen, "port": site.port, "pid": os.getpid()})
    if heartbeat is not None:
        heartbeat.start()
    await stop.wait()
    log.info("shutting down: no new connections, finishing in-flight requests")
    if metrics_runner is not None:
        await metrics_runner.cleanup()
    await runner.cleanup()  # closes the listener first, then waits for handlers up to shutdown_timeout
    if heartbeat is not None:
        heartbeat.stop()
    log.info("stopped")


# CPython's default first threshold (700) is crossed by the transient objects of a handful of requests, so a
# busy worker ran ~90 young collections a second and, every hundredth, a full one that walked every object
# in the process: measured pauses of 40-160 ms at 5,000 req/s, which were the p99. With a higher first
# threshold, young collections run when garbage has really piled up (a few MB at most).
GC_THRESHOLDS = (20_000, 50, 100)


def tune_gc() -> None:
    """Move everything loaded so far out of the collector's sight (``gc.freeze``: modules, config, keys
    live for the whole process, and forked workers keep sharing those pages) and raise the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _run_worker(
    config: BrokerConfig, config_path: Path, listen: str, reuse_port: bool, heartbeat_fd: int | None = None
) -> None:
    tune_gc()
    raise_open_files_limit(config.server.max_connections)
    loop = new_event_loop()
    try:
        loop.run_until_complete(
            serve_until_stopped(config, config_path, listen, reuse_port=reuse_port, heartbeat_fd=heartbeat_fd)
        )
    finally:
        loop.close()


# Per client connection a worker may also hold an upstream one, plus a margin for Redis, logs and files.
FDS_PER_CONNECTION = 2
FD_MARGIN = 256


def raise_open_files_limit(max_connections: int) -> None:
    """Raise the soft open-files limit towards the hard one (as Go's runtime does): the usual soft 1024
    would make ``accept`` fail with EMFILE long before ``server.max_connections`` is reached."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections * FDS_PER_CONNECTION + FD_MARGIN
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if hard != resource.RLIM_INFINITY and hard < max_connections * FDS_PER_CONNECTION + FD_MARGIN:
        log.warning(
            "the open-files limit is too low for server.max_connections",
            extra={"hard_limit": hard, "max_connections": max_connections},
        )


def config_at_worker_start(config_path: Path, started_with: BrokerConfig) -> BrokerConfig:
    """What a (re)spawned worker serves: the file as it is now, so that a worker replacing a dead one does
    not bring back the config the parent started with after the others reloaded a newer one. When the file
    is broken now, the config the gateway started with (the last one this process validated)."""
    try:
        return load_config(config_path)
    except ConfigError as exc:
        log.warning(
            "the config file is broken at worker start: serving the config the gateway started with (%d "
            "problem(s))",
            len(exc.problems),
        )
        return started_with


def _worker_body(
    config: BrokerConfig, config_path: Path, listen: str, logs: LogPipeline | None
) -> WorkerBody:
    def body(heartbeat_fd: int) -> int:
        if logs is not None:
            logs.restart_after_fork()  # the parent's log thread did not survive the fork
        code = 0
        try:
            current = config_at_worker_start(config_path, config)
            _run_worker(current, config_path, listen, reuse_port=True, heartbeat_fd=heartbeat_fd)
        except OSError as exc:  # e.g. the port is taken: one clear line, the supervisor counts it
            log.error(f"worker failed: {exc}")
            code = 1
        except BaseException:
            log.exception("worker failed")
            code = 1
        if logs is not None:
            logs.stop()  # the worker ends with os._exit: write what is queued now
        return code

    return body


def run(
    config: BrokerConfig,
    config_path: Path,
    listen: str,
    *,
    created_metrics_dir: Path | None = None,
    logs: LogPipeline | None = None,
) -> int:
    """Serve with ``server.workers`` processes; returns the exit code.

    ``logs`` is the logging the CLI started: each forked worker restarts it (its own writer thread) and
    stops it before exiting; the caller stops it in this process.

    ``created_metrics_dir`` is the PROMETHEUS_MULTIPROC_DIR the CLI created for this run (it must exist
    before prometheus_client is imported); only that one is removed at the end: a directory the operator
    set is theirs, and is never removed.
    """
    workers = config.server.workers
    if workers == 1:
        _run_worker(config, config_path, listen, reuse_port=False)
        return 0
    exits = Counter(
        "broker_worker_exits_total",
        "Worker processes that exited, by signal or status",
        ["reason"],
        registry=None,
    )

    def on_worker_exit(pid: int, reason: str) -> None:
        exits.labels(reason=reason).inc()
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            mark_process_dead(pid)  # type: ignore[no-untyped-call]  # its live gauges leave the aggregate; its counters stay counted

    supervisor = Supervisor(
        _worker_body(config, config_path, listen, logs),
        workers,
        worker_timeout=config.server.worker_timeout,
        shutdown_timeout=config.server.shutdown_timeout,
        on_worker_exit=on_worker_exit,
    )
    try:
        return supervisor.run()
    finally:
        if created_metrics_dir is not None:
            shutil.rmtree(created_metrics_dir, ignore_errors=True)

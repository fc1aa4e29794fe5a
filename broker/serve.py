"""``broker run``: serve the gateway with N worker processes, uvloop, metrics, and graceful shutdown.

- ``server.workers`` > 1 forks that many processes that all listen on the port (SO_REUSEPORT: the kernel
  spreads connections); the parent forwards SIGTERM/SIGINT/SIGHUP and waits for them.
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
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from broker.app import create_app
from broker.config.schema import BrokerConfig
from broker.event_loop import new_event_loop
from broker.listen import split_listen
from broker.metrics import METRICS, metrics_app
from broker.observability import flush_logging
from broker.reload import reload_config

log = logging.getLogger(__name__)


async def serve_until_stopped(
    config: BrokerConfig, config_path: Path, listen: str, *, reuse_port: bool
) -> None:
    """Run one worker: the gateway (and metrics) until SIGTERM/SIGINT, then shut down gracefully.

    SIGHUP reloads the config file (which is also watched for changes).
    """
    app = create_app(config, config_path.parent, config_path=config_path)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=config.server.shutdown_timeout)
    await runner.setup()
    host, port = split_listen(listen)
    await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
    metrics_runner = None
    if config.server.metrics_listen:
        metrics_runner = web.AppRunner(metrics_app(app[METRICS]), access_log=None)
        await metrics_runner.setup()
        m_host, m_port = split_listen(config.server.metrics_listen)
        await web.TCPSite(metrics_runner, m_host, m_port, reuse_port=reuse_port).start()
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
    log.info("gateway listening", extra={"listen": listen, "pid": os.getpid()})
    await stop.wait()
    log.info("shutting down: no new connections, finishing in-flight requests")
    if metrics_runner is not None:
        await metrics_runner.cleanup()
    await runner.cleanup()  # closes the listener first, then waits for handlers up to shutdown_timeout
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


def _run_worker(config: BrokerConfig, config_path: Path, listen: str, reuse_port: bool) -> None:
    tune_gc()
    loop = new_event_loop()
    try:
        loop.run_until_complete(serve_until_stopped(config, config_path, listen, reuse_port=reuse_port))
    finally:
        loop.close()


def run(config: BrokerConfig, config_path: Path, listen: str) -> int:
    """Serve with ``server.workers`` processes; returns the exit code."""
    workers = config.server.workers
    if workers == 1:
        _run_worker(config, config_path, listen, reuse_port=False)
        return 0
    # Set by the CLI before prometheus_client was imported (see cli.cmd_run); created here otherwise.
    metrics_dir = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="broker-metric"))
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                _run_worker(config, config_path, listen, reuse_port=True)
            except BaseException:
                log.exception("worker failed")
                code = 1
            flush_logging()
            os._exit(code)
        children.append(pid)
    return _supervise(children, lambda: shutil.rmtree(metrics_dir, ignore_errors=True))


def _supervise(children: list[int], cleanup: Callable[[], None]) -> int:
    """Forward signals to the workers and wait for all of them."""

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    failed = 0
    try:
        for pid in children:
            while True:
                try:
                    _, status = os.waitpid(pid, 0)
                    break
                except InterruptedError:
                    continue
            failed += os.waitstatus_to_exitcode(status) != 0
    finally:
        cleanup()
    return 1 if failed else 0

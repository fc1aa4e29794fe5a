"""Live config reload: on file change and on SIGHUP, validate in full, then swap atomically.
(The reloader also owns the other config-dependent background tasks: key refresh, session counts.)

- A bad file (YAML, schema, unreadable key or certificate) keeps the last good config running; every
  problem is logged with file:line and counted in ``broker_config_reloads_total{result="error"}``.
- In-flight requests finish on the gateway they started with (see ``runtime.gateway_of``); the previous
  generation's upstream connections are closed once they can no longer be in use.
- Sessions survive: the store, the IdP client and the key cache are shared by every generation.
- The file is polled (mtime, size, inode): that catches editors' atomic renames and Kubernetes ConfigMap
  symlink swaps without a platform-specific watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from broker.config.schema import BrokerConfig
from broker.errors import ConfigError, SessionStoreUnavailable
from broker.gateway import GATEWAY, Gateway
from broker.oidc.verifier import source_of
from broker.ops.metrics import METRICS
from broker.ops.tasks import cancel_and_wait, sleep_unless
from broker.ops.tracing import TRACING
from broker.sessions.manager import company_index

log = logging.getLogger(__name__)

DEFAULT_WATCH_INTERVAL = 1.0
# After a swap, the old generation's upstream clients stay open this much longer than the longest
# read timeout, so a streaming response that started before the reload is never cut.
RETIRE_MARGIN = 30.0
SESSION_SAMPLE_INTERVAL = 30.0


def _file_state(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class Reloader:
    """Owns the config-dependent background tasks and replaces the gateway when the config changes."""

    def __init__(
        self,
        app: web.Application,
        config_path: Path | None,
        load: Callable[[Path], BrokerConfig],
        assemble: Callable[[BrokerConfig], Gateway],
    ) -> None:
        self._app = app
        self._path = config_path
        self._load = load
        self._assemble = assemble
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._key_refresher: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._retiring: list[Gateway] = []
        self._stopping = asyncio.Event()

    async def start(self, watch_interval: float) -> None:
        """Keep the current companies' keys fresh, sample session counts and, with a config file, watch it."""
        self._restart_key_refresher(self._app[GATEWAY].current)
        self._track(asyncio.create_task(self._sample_sessions(), name="session-gauge"))
        if self._path is not None:
            self._watcher = asyncio.create_task(self._watch(watch_interval), name="config-watch")

    async def stop(self) -> None:
        """Stop background work (bounded: see ``tasks.py``) and close the retired generations' clients."""
        self._stopping.set()
        await cancel_and_wait([self._watcher, self._key_refresher, *self._tasks])
        for gateway in self._retiring:
            await gateway.upstreams.close()

    async def reload(self) -> bool:
        """Load, validate and swap in the config file; False (and the old config kept) when it is bad."""
        if self._path is None:
            return False
        metrics = self._app[METRICS]
        async with self._lock:
            try:
                config = self._load(self._path)
                gateway = self._assemble(config)
            except ConfigError as exc:
                for problem in exc.problems:
                    log.error("config reload refused: %s", problem)
                log.error("keeping the running config (%d problem(s) in %s)", len(exc.problems), self._path)
                metrics.reload_done(False, time.time())
                return False
            holder = self._app[GATEWAY]
            if config.sessions.store != holder.current.config.sessions.store:
                log.warning("sessions.store changed: the running store is kept until a restart")
            if config.sessions.store_timeout != holder.current.config.sessions.store_timeout:
                log.warning(
                    "sessions.store_timeout changed: the running store keeps its timeout until a restart"
                )
            if config.sessions.cache_ttl != holder.current.config.sessions.cache_ttl:
                log.warning("sessions.cache_ttl changed: the running cache is kept until a restart")
            await gateway.upstreams.start(self._app[TRACING].client_hooks)
            previous = holder.swap(gateway)
            self._restart_key_refresher(gateway)
            self._retire(previous)
            metrics.reload_done(True, time.time())
            log.info("config reloaded", extra={"generation": holder.generation, "file": str(self._path)})
            return True

    def _restart_key_refresher(self, gateway: Gateway) -> None:
        if self._key_refresher is not None:
            self._key_refresher.cancel()
            self._track(self._key_refresher)  # stop() still waits for it, should the cancel be slow
        sources = list(dict.fromkeys(source_of(t) for t in gateway.config.tenants.values()))
        self._key_refresher = asyncio.create_task(
            gateway.discovery.refresh_forever(sources), name="key-refresh"
        )

    def _retire(self, gateway: Gateway) -> None:
        self._retiring.append(gateway)
        longest = max((r.read_timeout for r in gateway.config.routes), default=0.0)

        async def close_later() -> None:
            if await sleep_unless(self._stopping, longest + RETIRE_MARGIN):
                return  # stop() closes it
            self._retiring.remove(gateway)
            await gateway.upstreams.close()

        self._track(asyncio.create_task(close_later(), name="retire-generation"))

    def _track(self, task: asyncio.Task[None]) -> None:
        """Keep a background task until it ends, so ``stop`` can wait for it."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def sample_sessions(self) -> None:
        """Set ``broker_active_sessions{company}`` from each company's session index.

        An upper bound: a session that ended by idle timeout stays listed until its lifetime is over.
        """
        gateway = self._app[GATEWAY].current
        gauge = self._app[METRICS].active_sessions
        for code in gateway.config.tenants:
            gauge.labels(code).set(await gateway.sessions.index_size(company_index(code)))

    async def _sample_sessions(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(SessionStoreUnavailable):
                await self.sample_sessions()
            if await sleep_unless(self._stopping, SESSION_SAMPLE_INTERVAL):
                return

    async def _watch(self, interval: float) -> None:
        assert self._path is not None
        seen = _file_state(self._path)
        while not await sleep_unless(self._stopping, interval):
            state = _file_state(self._path)
            if state is None or state == seen:
                continue  # a missing file mid-rename is not a change yet
            seen = state
            await self.reload()


RELOADER = web.AppKey("reloader", Reloader)


async def reload_config(app: web.Application) -> bool:
    """Reload now (what SIGHUP does)."""
    return await app[RELOADER].reload()

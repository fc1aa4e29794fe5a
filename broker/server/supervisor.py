"""The parent of ``server.workers`` > 1: it forks the workers and keeps that many running, as gunicorn's
arbiter does.

- A worker that exits (crash, OOM kill, ``kill -9``) is logged with its signal or exit status, counted in
  ``broker_worker_exits_total{reason}``, its live metrics files are marked dead, and it is replaced: at
  once if it had been serving, after a growing back-off if it died before serving.
- ``MAX_START_FAILURES`` workers in a row dying before they serve (a port taken, a broken key file) make
  the parent give up: it stops the others and exits 1, so the orchestrator sees the failure.
- Each worker writes a heartbeat byte to its own pipe every ``HEARTBEAT_INTERVAL`` from its event loop. A
  worker silent for ``server.worker_timeout`` (event loop blocked, process SIGSTOPped: its SO_REUSEPORT
  share of new connections would wait in its accept queue for the whole stop) is SIGKILLed and replaced.
- SIGTERM / SIGINT are forwarded and the parent waits for the workers' graceful shutdown (killing any
  still there ``KILL_GRACE`` after ``server.shutdown_timeout``); SIGHUP is forwarded (config reload).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from broker.config.schema import HEARTBEAT_INTERVAL

log = logging.getLogger(__name__)

MAX_START_FAILURES = 5
FIRST_BACKOFF = 0.25  # seconds before replacing a worker that died before serving; doubles each time
MAX_BACKOFF = 8.0
KILL_GRACE = 5.0  # after shutdown_timeout, workers still alive are SIGKILLed
WAKE_UP = 0.5  # the parent's loop looks at the clock at least this often

# A worker: called in the child with the write end of its heartbeat pipe; returns its exit code.
WorkerBody = Callable[[int], int]


@dataclass
class Worker:
    """One child process as the parent sees it."""

    pid: int
    beats: int  # read end of its heartbeat pipe
    started: float
    last_beat: float
    serving: bool = False


def describe_exit(status: int) -> tuple[str, str]:
    """A wait status -> (reason label, text): ``("SIGKILL", "killed by SIGKILL")``, ``("exit_1", ...)``."""
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        return name, f"killed by {name}"
    code = os.waitstatus_to_exitcode(status)
    return f"exit_{code}", f"exited with status {code}"


def _died_of_the_stop(worker: Worker, status: int) -> bool:
    """A worker still starting when the stop came has no handler for SIGTERM/SIGINT yet (its event loop
    installs them) and dies of the signal the parent forwarded: it had served nothing, so that is a clean
    stop, not a failure (``broker run`` stopped right after it started would otherwise exit 1)."""
    stop_signals = (signal.SIGTERM, signal.SIGINT)
    return not worker.serving and os.WIFSIGNALED(status) and os.WTERMSIG(status) in stop_signals


class Supervisor:
    """Runs ``count`` copies of a worker body until SIGTERM/SIGINT, replacing the ones that die."""

    def __init__(
        self,
        body: WorkerBody,
        count: int,
        *,
        worker_timeout: float,
        shutdown_timeout: float,
        on_worker_exit: Callable[[int, str], None] = lambda _pid, _reason: None,
    ) -> None:
        self._body, self._count = body, count
        self._worker_timeout, self._shutdown_timeout = worker_timeout, shutdown_timeout
        self._on_worker_exit = on_worker_exit
        self._workers: dict[int, Worker] = {}
        self._signals: list[int] = []
        self._respawn_at: list[float] = []
        self._start_failures = 0
        self._stopping_since: float | None = None
        self._stop_failures = 0

    def run(self) -> int:
        """Fork the workers and supervise them; the exit code of ``broker run``."""
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        previous_wakeup = signal.set_wakeup_fd(wake_write)  # a signal makes select() return at once
        handlers = {
            sig: signal.signal(sig, self._note_signal)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        handlers[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, self._note_signal)
        try:
            for _ in range(self._count):
                self._spawn()
            return self._loop(wake_read)
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            for fd in (wake_read, wake_write):
                os.close(fd)

    def _note_signal(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)

    def _spawn(self) -> None:
        beats, beat_out = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's loop
            os.close(beats)
            for other in self._workers.values():
                os.close(other.beats)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            code = 1
            try:
                code = self._body(beat_out)
            finally:
                os._exit(code)
        os.close(beat_out)
        os.set_blocking(beats, False)
        now = time.monotonic()
        self._workers[pid] = Worker(pid, beats, now, now)
        log.info("worker started", extra={"pid": pid})

    def _loop(self, wake_read: int) -> int:
        while True:
            fds = [wake_read, *(w.beats for w in self._workers.values())]
            readable, _, _ = select.select(fds, [], [], WAKE_UP)
            if wake_read in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_read, 4096)
            self._read_heartbeats(set(readable))
            self._handle_signals()
            self._reap()
            if self._stopping_since is not None:
                if not self._workers:
                    log.info("all workers stopped")
                    return 1 if self._stop_failures else 0
                self._kill_stragglers()
                continue
            if self._start_failures >= MAX_START_FAILURES:
                log.error(
                    "workers keep dying before they serve: giving up",
                    extra={"failures_in_a_row": self._start_failures},
                )
                self._stop(signal.SIGTERM)
                self._stop_failures += 1
                continue
            self._kill_silent()
            self._respawn_due()

    def _read_heartbeats(self, readable: set[int]) -> None:
        now = time.monotonic()
        for worker in self._workers.values():
            if worker.beats in readable:
                with contextlib.suppress(BlockingIOError):
                    if os.read(worker.beats, 4096):
                        worker.last_beat = now
                        if not worker.serving:
                            worker.serving = True
                            self._start_failures = 0

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum in (signal.SIGTERM, signal.SIGINT) and self._stopping_since is None:
                log.info("stopping the workers", extra={"signal": signal.Signals(signum).name})
                self._stop(signum)
            elif signum == signal.SIGHUP:
                self._send_all(signum)

    def _stop(self, signum: int) -> None:
        self._stopping_since = time.monotonic()
        self._respawn_at.clear()
        self._send_all(signum)

    def _send_all(self, signum: int) -> None:
        for pid in self._workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _reap(self) -> None:
        while self._workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self._workers.pop(pid, None)
            if worker is None:
                continue
            os.close(worker.beats)
            reason, text = describe_exit(status)
            self._on_worker_exit(pid, reason)
            if self._stopping_since is not None:
                self._stop_failures += status != 0 and not _died_of_the_stop(worker, status)
                log.info("worker stopped", extra={"pid": pid, "reason": reason})
                continue
            lived = time.monotonic() - worker.started
            log.warning(
                f"worker {text}; replacing it",
                extra={
                    "pid": pid,
                    "reason": reason,
                    "uptime": round(lived, 3),
                    "was_serving": worker.serving,
                },
            )
            delay = 0.0
            if not worker.serving:
                self._start_failures += 1
                delay = min(FIRST_BACKOFF * 2 ** (self._start_failures - 1), MAX_BACKOFF)
            self._respawn_at.append(time.monotonic() + delay)

    def _respawn_due(self) -> None:
        now = time.monotonic()
        due = [t for t in self._respawn_at if t <= now]
        self._respawn_at = [t for t in self._respawn_at if t > now]
        for _ in due:
            self._spawn()

    def _kill_silent(self) -> None:
        now = time.monotonic()
        for worker in self._workers.values():
            silent = now - worker.last_beat
            # A worker still starting up gets the same allowance: start-up is a few hundred milliseconds.
            if silent > self._worker_timeout:
                log.error(
                    "worker silent (event loop blocked or process stopped): killing it",
                    extra={"pid": worker.pid, "silent_for": round(silent, 1)},
                )
                worker.last_beat = now  # one SIGKILL; the reaper replaces it
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)

    def _kill_stragglers(self) -> None:
        assert self._stopping_since is not None
        if time.monotonic() - self._stopping_since > self._shutdown_timeout + KILL_GRACE:
            log.error("workers still running after the shutdown timeout: killing them")
            self._stopping_since = time.monotonic()  # once per grace period
            self._send_all(signal.SIGKILL)


class Heartbeat:
    """Worker side: one byte to the supervisor every ``HEARTBEAT_INTERVAL``, written from the event loop
    (so a blocked loop is as silent as a stopped process). The first beat also says "serving"."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop, on_orphaned: Callable[[], None]) -> None:
        self._fd, self._loop, self._on_orphaned = fd, loop, on_orphaned
        self._next: asyncio.TimerHandle | None = None
        os.set_blocking(fd, False)

    def start(self) -> None:
        """Beat now (the worker is serving) and every interval after."""
        self._beat()

    def _beat(self) -> None:
        try:
            os.write(self._fd, b".")
        except BlockingIOError:
            pass  # the supervisor has not read the last beats yet: it is alive
        except BrokenPipeError:
            # The supervisor died (kill -9): stop gracefully, not serve on as an orphan nobody replaces.
            log.error("the supervisor is gone: stopping this worker")
            self._on_orphaned()
            return
        self._next = self._loop.call_later(HEARTBEAT_INTERVAL, self._beat)

    def stop(self) -> None:
        """No more beats (the worker is shutting down; the supervisor then only waits for its exit)."""
        if self._next is not None:
            self._next.cancel()

"""What a metric needs when several worker processes share one PROMETHEUS_MULTIPROC_DIR.

- An event every worker sees (a config reload: SIGHUP is forwarded to all, each polls the file) must be
  counted once, not once per worker: ``SoleReporter`` elects one live process, by an exclusive ``flock`` on
  a file in that directory (released by the kernel when its holder dies, then taken by the next worker).
- Process metrics (memory, CPU, open files) are read from ``/proc/self`` by prometheus-client's
  ``ProcessCollector``, which the multiprocess collector cannot aggregate: ``ProcessGauges`` copies each
  worker's figures into gauges labelled with its ``pid`` (``liveall``: a dead worker's series disappear).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REPORTER_LOCK = "broker-reporter.lock"


def multiprocess_dir() -> str | None:
    """The shared metrics directory when several workers run (set by ``broker run``), else None."""
    return os.environ.get(MULTIPROC_ENV) or None


class SoleReporter:
    """Whether this process is the one that counts what every worker sees; exactly one live process is."""

    def __init__(self, directory: str | None) -> None:
        self._lock_path = Path(directory, REPORTER_LOCK) if directory else None
        self._fd: int | None = None

    def elected(self) -> bool:
        """True in a single process, or when this worker holds (or now takes) the reporter's lock."""
        if self._lock_path is None or self._fd is not None:
            return True
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd  # held for the process's life: the kernel releases it when the process ends
        return True


# prometheus-client's process metric -> whether it is a counter (exported with ``_total`` as a gauge here:
# a per-pid series that ends with its process, which a counter's multiprocess mode cannot express).
PROCESS_METRICS = {
    "process_virtual_memory_bytes": "Virtual memory size in bytes, per worker",
    "process_resident_memory_bytes": "Resident memory size in bytes, per worker",
    "process_start_time_seconds": "Start time of the worker since unix epoch in seconds",
    "process_cpu_seconds_total": "Total user and system CPU time spent in seconds, per worker",
    "process_open_fds": "Number of open file descriptors, per worker",
    "process_max_fds": "Maximum number of open file descriptors, per worker",
}


class ProcessGauges:
    """This worker's process metrics as ``liveall`` gauges (one series per live worker, label ``pid``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._source = ProcessCollector(registry=None)
        self._gauges = {
            name: Gauge(name, text, registry=registry, multiprocess_mode="liveall")
            for name, text in PROCESS_METRICS.items()
        }

    def sample(self) -> None:
        """Read ``/proc/self`` now and set the gauges."""
        for family in self._source.collect():
            for sample in family.samples:
                gauge = self._gauges.get(sample.name)
                if gauge is not None:
                    gauge.set(sample.value)

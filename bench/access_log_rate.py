"""Access-log cost: what one ``log_access`` call costs the request that makes it, and how many access
records per CPU-second the whole logging path (as ``broker run`` configures it: JSON, the queue handler
and its listener thread, the garbage collector tuned as a worker tunes it) turns into lines on a stream
that writes to /dev/null.

    .venv/bin/python bench/access_log_rate.py [--records 200000] [--batch 2000] [--runs 5]

Records are logged in batches smaller than the log queue; after each batch the benchmark sleeps until every
line is written, so nothing is dropped (checked) and the writer's formatting and writing are counted in the
process CPU time (``time.process_time`` covers every thread). Prints, per run and as the median:

- caller: microseconds per ``log_access`` call on the logging thread (the request's hot path);
- CPU: microseconds of process CPU per record (caller + listener thread), and records per CPU-second.

To compare with another version of the code, run this file with ``PYTHONPATH`` set to that version's
checkout (e.g. ``git worktree add /tmp/old <commit>``; the hand-built writer is in this file's history).
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(REPO))

from broker.ops import events as observability  # noqa: E402
from broker.ops.logging import configure_logging  # noqa: E402
from broker.server.serve import tune_gc  # noqa: E402


class CountingDevNull(io.TextIOBase):
    """A text stream that writes to /dev/null and counts the lines it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.lines = 0
        self._null = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        return self._null.write(text)

    def flush(self) -> None:
        if not self._null.closed:
            self._null.flush()

    def close(self) -> None:
        super().close()
        self._null.close()


def one_run(records: int, batch: int) -> tuple[float, float]:
    """(caller µs per record, CPU µs per record) for ``records`` access lines."""
    stream = CountingDevNull()
    logs = configure_logging("json", stream=stream)  # type: ignore[arg-type]
    user = "72f988bf-86f1-41af-91ab-2d7cd011db47:4c3f2b1a-9d8e-4f7a-8b6c-5d4e3f2a1b0c"
    caller = 0.0
    cpu_start = time.process_time()
    done = 0
    while done < records:
        count = min(batch, records - done)
        observability.current_request_id.set(secrets.token_hex(12))
        started = time.perf_counter()
        for n in range(count):
            observability.log_access(
                "GET", f"/reports/2024/q{n % 4}", 200, 1.23, "reports", "10.1.2.3", user, "contoso"
            )
        caller += time.perf_counter() - started
        done += count
        deadline = time.monotonic() + 30
        while stream.lines < done and time.monotonic() < deadline:
            time.sleep(0.001)
    cpu = time.process_time() - cpu_start
    logs.stop(timeout=30)
    if stream.lines != records:
        raise SystemExit(f"{records - stream.lines} of {records} lines missing (dropped?)")
    stream.close()
    return caller / records * 1e6, cpu / records * 1e6


def main() -> None:
    """Run and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    tune_gc()
    callers, cpus = [], []
    for run in range(1, args.runs + 1):
        caller, cpu = one_run(args.records, args.batch)
        callers.append(caller)
        cpus.append(cpu)
        print(f"run {run}: {figures(caller, cpu)}")
    print(f"median: {figures(statistics.median(callers), statistics.median(cpus))}")


def figures(caller: float, cpu: float) -> str:
    """One line of results."""
    return f"caller {caller:.2f} µs/record, CPU {cpu:.2f} µs/record ({1e6 / cpu:,.0f} records/CPU-second)"


if __name__ == "__main__":
    main()

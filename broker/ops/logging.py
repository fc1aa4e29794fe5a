"""Where log records go: the standard library's ``QueueHandler`` puts them on a bounded queue, a
``QueueListener`` thread formats them (JSON, or text for the demo) and writes them to stdout.

Writing never blocks the event loop: a stdout that stops draining (a stuck log shipper, a full pipe) stalls
the listener's thread only; once the queue is full, records are dropped and counted, and the count is
written as soon as the listener catches up.

Nothing here is module state: ``configure_logging`` returns the ``LogPipeline`` it started, and whoever
called it owns it: stops it (writing what is queued) at exit, and restarts it in a forked worker.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from logging.handlers import QueueHandler, QueueListener
from queue import SimpleQueue
from types import TracebackType
from typing import Any, TextIO

from pythonjsonlogger.msgspec import MsgspecFormatter

from broker.ops.events import ACCESS_FIELDS, AccessRecord, current_request_id, current_trace_id

DEFAULT_QUEUE_SIZE = 10_000
# When the listener finds the queue empty, it writes what it has formatted, then waits this long before
# taking the next record: one wake-up and one write for all the records of that interval, rather than a
# thread switch and a system call per line. Lines reach stdout at most this late.
WRITE_INTERVAL = 0.05
# ... or as soon as this many lines are waiting (a queue that never empties still gets written).
BATCH_LINES = 1_000
# At exit, how long the listener may take to write what is queued (a stuck stdout must not hold it up).
DEFAULT_STOP_TIMEOUT = 2.0
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# The attributes every LogRecord has: anything else on a record is an ``extra`` field of the line.
STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_PLAIN = (str, int, float, bool, type(None))
# An access line's fields after ts, level, logger and msg, in the order the general path writes them.
_ACCESS_CONTEXT = ("request_id", "trace_id")
_ACCESS_EXTRAS = ("event", *ACCESS_FIELDS)


class JsonFormatter(MsgspecFormatter):
    """``{"ts", "level", "logger", "msg", "request_id"?, ...extras, "exc"?}`` on one line; an extra that is
    not a JSON scalar is written as its ``str`` (one type per field, whatever a caller passes).

    python-json-logger's msgspec flavour: the same record-to-fields logic as its ``json.dumps`` one, with
    an encoder built once that writes a line in ~0.5 us instead of ~3.4 us (the listener thread that
    formats holds the GIL the requests need). Output is compact UTF-8 JSON, control characters escaped.
    """

    def __init__(self) -> None:
        # Every value is a scalar by the time it is encoded, so no ``default`` hook is needed.
        super().__init__(reserved_attrs=sorted(STANDARD_ATTRIBUTES), json_default=None)
        self._encode_bytes = self._encoder.encode
        self._second: tuple[int, str] = (-1, "")

    def _timestamp(self, created: float) -> str:
        # Thousands of lines share a second: format the date and time once per second (one tuple, so a
        # formatter shared between threads never pairs a second with another second's text).
        second, text = self._second
        if int(created) != second:
            second = int(created)
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        return f"{text}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        """One line; an access record (one per request, most of the lines) takes a direct path with the same
        output: its fields are known, so they are copied by name rather than found among ~25 attributes."""
        if type(record) is not AccessRecord:
            return super().format(record)
        fields = record.__dict__
        record.message = fields["msg"]  # made by ``access_message``: no arguments to merge
        data: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": "info",
            "logger": record.name,
            "msg": record.message,
        }
        # Captured on the logging thread (``access_record``, ``RequestQueueHandler.prepare``).
        for key in _ACCESS_CONTEXT:
            value = fields.get(key)
            if value:
                data[key] = value
        for key in _ACCESS_EXTRAS:
            value = fields[key]
            data[key] = value if isinstance(value, _PLAIN) else str(value)
        return self._encode_bytes(data).decode()

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        """The fixed fields first, then the record's extras, then the traceback."""
        log_data["ts"] = self._timestamp(record.created)
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        log_data["msg"] = record.message
        # Captured on the logging thread (``RequestQueueHandler.prepare``); formatted in place, the context.
        request_id = record.__dict__.get("request_id") or current_request_id.get()
        if request_id:
            log_data["request_id"] = request_id
        trace_id = record.__dict__.get("trace_id") or current_trace_id.get()
        if trace_id:
            log_data["trace_id"] = trace_id
        reserved = self.reserved_attrs
        for key, value in record.__dict__.items():
            if key not in reserved and not key.startswith("_"):
                log_data[key] = value if isinstance(value, _PLAIN) else str(value)
        if message_dict.get("exc_info"):
            log_data["exc"] = message_dict["exc_info"]


class RequestQueueHandler(QueueHandler):
    """Puts records on a bounded queue without ever waiting: when it is full, the record is dropped and
    counted. What belongs to the logging moment and thread (message, request id, traceback) is frozen
    here, as the listener formats the record later on another thread."""

    def __init__(self, size: int) -> None:
        # Also carries the listener's stop sentinel (None), put there by ``QueueListener.stop``.
        self.records: SimpleQueue[logging.LogRecord] = SimpleQueue()
        super().__init__(self.records)
        self.size = size
        self.dropped = 0  # since the listener last wrote the count (``take_dropped`` resets it)
        # Every record dropped by this handler since it was made, never reset: for a metric, and for a
        # reader that must not race the listener's ``take_dropped``.
        self.dropped_total = 0
        self._dropped_lock = threading.Lock()

    def reset_after_fork(self) -> None:
        """A new queue and counter: the parent's, and their locks (held at the fork, maybe), stay its own."""
        self.records = SimpleQueue()
        self.queue = self.records
        self.dropped = 0
        self.dropped_total = 0
        self._dropped_lock = threading.Lock()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """The record as the listener will format it (copied only when it carries a traceback)."""
        if record.exc_info:
            # Formatted here, where it was raised: the listener never walks another thread's frames.
            record = logging.makeLogRecord(record.__dict__)
            record.exc_text = logging.Formatter().formatException(record.exc_info)  # type: ignore[arg-type]
            record.exc_info = None
        if record.args:
            record.msg = record.getMessage()  # the arguments may change before the listener gets to them
            record.args = None
        if "request_id" not in record.__dict__:
            request_id = current_request_id.get()
            if request_id:
                record.request_id = request_id
        if "trace_id" not in record.__dict__:
            trace_id = current_trace_id.get()
            if trace_id:
                record.trace_id = trace_id
        return record

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and queue the record, without the handler's lock: the queue is thread-safe, and this runs
        once per request on the event loop."""
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def enqueue(self, record: logging.LogRecord) -> None:
        """Queue the record, or drop and count it when the listener is that far behind."""
        if self.records.qsize() >= self.size:
            with self._dropped_lock:
                self.dropped += 1
                self.dropped_total += 1
            return
        self.records.put_nowait(record)

    def take_dropped(self) -> int:
        """How many records were dropped since the last call."""
        if not self.dropped:
            return 0
        with self._dropped_lock:
            dropped, self.dropped = self.dropped, 0
        return dropped


def dropped_record(count: int) -> logging.LogRecord:
    """The line that says ``count`` records are missing."""
    return logging.makeLogRecord(
        {
            "name": "broker.logging",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": f"log queue full: {count} record(s) dropped",
            "dropped": count,
        }
    )


class BatchingStreamHandler(logging.StreamHandler[TextIO]):
    """A ``StreamHandler`` that writes in batches: ``emit`` formats, ``flush`` writes every waiting line
    in one ``write`` (called by ``LogWriter`` once it has caught up, and every ``BATCH_LINES``)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Format the record; write the batch when it is full."""
        try:
            self._lines.append(self.format(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)
        if len(self._lines) >= BATCH_LINES:
            self.flush()

    def flush(self) -> None:
        """Write the waiting lines and flush the stream."""
        self.acquire()
        try:
            lines, self._lines = self._lines, []
            if lines:
                self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except Exception:  # a broken stdout must not end the listener's thread (these lines are lost)
            pass
        finally:
            self.release()


class LogWriter(QueueListener):
    """The listener's thread: writes each record, and the count of dropped ones once it has caught up;
    takes records in batches (``WRITE_INTERVAL``)."""

    def __init__(self, source: RequestQueueHandler, output: logging.Handler) -> None:
        super().__init__(source.records, output)
        self._source = source
        self._records = source.records
        self._output = output

    def dequeue(self, block: bool) -> logging.LogRecord:
        """The next record; when none is waiting, write what is formatted, then let records accumulate."""
        if self._records.empty():
            self._output.flush()
            time.sleep(WRITE_INTERVAL)
        return self._records.get(block)

    def handle(self, record: logging.LogRecord) -> None:
        """Write the record; when it is the last one queued (the listener has caught up), the count of
        records dropped meanwhile first."""
        dropped = self._source.take_dropped() if self._records.empty() else 0
        if dropped:
            self._output.handle(dropped_record(dropped))
        self._output.handle(record)  # the one handler, whatever its level (as QueueListener.handle does)


class LogPipeline:
    """The queue handler and the listener that drains it; a context manager that stops (and flushes) it."""

    def __init__(self, formatter: logging.Formatter, stream: TextIO, size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.handler = RequestQueueHandler(size)
        self._formatter = formatter
        self._stream = stream
        self._output = BatchingStreamHandler(stream)
        self._writer: LogWriter | None = None

    def start(self) -> None:
        """Start the listener's thread (with a new output: a batch formatted before a fork is the
        parent's to write)."""
        self._output = BatchingStreamHandler(self._stream)
        self._output.setFormatter(self._formatter)
        self._writer = LogWriter(self.handler, self._output)
        self._writer.start()

    def restart_after_fork(self) -> None:
        """In a forked worker: the parent's listener thread did not survive the fork, and what the parent
        queued is the parent's to write. A new queue, a new thread."""
        self.handler.reset_after_fork()
        self.start()

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Write what is queued, then stop the thread, within ``timeout`` (a stuck stdout does not hold up
        the exit); the handler leaves the root logger, so later records do not queue up unwritten."""
        writer, self._writer = self._writer, None
        root = logging.getLogger()
        if self.handler in root.handlers:
            root.removeHandler(self.handler)
        if writer is None:
            return
        # QueueListener.stop waits for the thread without a limit: wait for it on a helper thread instead.
        stopping = threading.Thread(target=writer.stop, name="log-writer-stop", daemon=True)
        stopping.start()
        stopping.join(timeout)
        if not stopping.is_alive():
            dropped = self.handler.take_dropped()
            if dropped:
                self._output.handle(dropped_record(dropped))
            self._output.flush()

    def __enter__(self) -> LogPipeline:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def make_formatter(fmt: str) -> logging.Formatter:
    """JSON (production) or plain text (``fmt="text"``: the demo, a terminal)."""
    if fmt == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT, "%H:%M:%S")


def configure_logging(
    fmt: str = "json", level: int = logging.INFO, stream: TextIO | None = None
) -> LogPipeline:
    """Send every log record through a new, started ``LogPipeline`` to ``stream`` (stdout by default); the
    caller owns it: ``with configure_logging(...) as logs:`` stops it at the end."""
    pipeline = LogPipeline(make_formatter(fmt), stream or sys.stdout)
    pipeline.start()
    # Records never show thread or process names: skip looking them up for each one (the logging HOWTO's
    # "Optimization" section). The access line, once per request, also skips finding the caller's file and
    # line (``broker.ops.events.log_access`` makes its record itself).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [pipeline.handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return pipeline


@contextmanager
def command_logging(stream: TextIO | None = None, level: int = logging.INFO) -> Iterator[None]:
    """Log lines of a one-shot command (``broker sessions revoke``: its audit event) as JSON to ``stream``
    (stderr: stdout is the command's output) while it runs.

    Written as they come, without a queue: there is no request to keep waiting. Added to what is there
    rather than replacing it, and taken away after, so a command run in-process leaves logging as it was.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(level)
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(handler)
    if root.getEffectiveLevel() > level:
        root.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)

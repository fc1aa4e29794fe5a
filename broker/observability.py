"""Logging: one JSON object per line on stdout, with the structured fields handlers attach via ``extra``,
the current request id on every line, audit events on their own logger (``broker.audit``) and one access
line per request (``broker.access``).

Writing never blocks the event loop: records go onto a bounded queue and a writer thread formats and
prints them (``BackgroundLogWriter``). A stdout that stops draining (a stuck log shipper, a full pipe) stalls
that thread only; once the queue is full, records are dropped and counted, and the count is reported as
soon as the writer catches up.

Fields are copied from the record's extras, never from request data wholesale, so tokens, cookies and
secrets cannot reach the log unless a handler names them (none does).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import sys
import threading
import time
from collections import deque
from contextvars import ContextVar
from typing import TextIO

# The request being handled by this task: set by the request-id middleware, read by every log line.
current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")
audit_log = logging.getLogger("broker.audit")
access_log = logging.getLogger("broker.access")
QUEUE_SIZE = 10_000

AUDIT_EVENTS = frozenset(
    {"login_success", "login_failure", "logout", "access_denied", "refresh_failure", "session_revoked"}
)


def audit(
    event: str, *, who: str | None = None, company: str | None = None, why: str = "", **fields: object
) -> None:
    """One audit event: who (``tid:oid``), which company, what happened and why. Never tokens or secrets."""
    if event not in AUDIT_EVENTS:
        raise ValueError(f"unknown audit event {event!r}")
    extra = {"event": event, "audit": True, "user": who, "company": company, "why": why, **fields}
    audit_log.info(
        "%s%s", event, f": {why}" if why else "", extra={k: v for k, v in extra.items() if v is not None}
    )


_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


_PLAIN = (str, int, float, bool, type(None))


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extras}`` on one line."""

    _second = -1
    _second_text = ""

    def _timestamp(self, created: float) -> str:
        # Thousands of lines share a second: format the date and time once per second.
        second = int(created)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        entry: dict[str, object] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = current_request_id.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, _PLAIN) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:  # formatted where it was raised (the background writer gets text)
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)

    def format_access(self, entry: AccessEntry) -> str:
        """The line ``format`` would give a ``broker.access`` record with these fields as extras.

        Built by hand, as this runs once per request: only the path can hold characters JSON must escape
        (the request line is the client's); the others are a method token, numbers, a request id that
        passed ``^[A-Za-z0-9._-]+$``, and values from the config, the socket and the session, which are
        escaped too, but only when they need it.
        """
        created, request_id, method, path, status, duration_ms, route, remote, user, company = entry
        quoted_path = json.dumps(path, ensure_ascii=False)
        return (
            f'{{"ts": "{self._timestamp(created)}", "level": "info", "logger": "broker.access", '
            f'"msg": {json.dumps(f"{method} {path} {status}", ensure_ascii=False)}'
            + (f', "request_id": "{request_id}"' if request_id else "")
            + f', "event": "access", "method": {_json_text(method)}, "path": {quoted_path}, '
            f'"status": {status}, "duration_ms": {duration_ms}, "route": {_json_text(route)}, '
            f'"remote": {_json_text(remote)}, "user": {_json_text(user)}, "company": {_json_text(company)}}}'
        )


_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f\x7f-\U0010ffff]')


def _json_text(value: str | None) -> str:
    """A JSON string (or null); plain text is wrapped without running the encoder."""
    if value is None:
        return "null"
    if _NEEDS_ESCAPE.search(value):
        return json.dumps(value, ensure_ascii=False)
    return f'"{value}"'


# An access line as queued by ``log_access``: when, request id, method, path (no query), status,
# duration in ms, route label, remote address, user (tid:oid) and company (None when anonymous).
AccessEntry = tuple[float, str, str, str, int, float, str, str | None, str | None, str | None]
ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "route", "remote", "user", "company")


def access_message(method: str, path: str, status: int) -> str:
    """The human part of an access line: ``GET /path 200``."""
    return f"{method} {path} {status}"


def log_access(
    method: str,
    path: str,
    status: int,
    duration_ms: float,
    route: str,
    remote: str | None,
    user: str | None,
    company: str | None,
) -> None:
    """One access line. With the background writer running (``broker run``), a tuple goes straight onto
    its queue: no LogRecord, no handler chain, on the request's path. Otherwise (tests, embedding) through
    the ``broker.access`` logger, with the same fields as extras."""
    writer = _writer
    request_id = current_request_id.get()
    entry = (time.time(), request_id, method, path, status, duration_ms, route, remote, user, company)
    if writer is not None and writer.is_root_handler():
        writer.handler.enqueue(entry)
    else:
        access_log.info(access_message(method, path, status), extra=_access_fields(entry))


def _access_fields(entry: AccessEntry) -> dict[str, object]:
    """The extras a ``broker.access`` record carries for this entry."""
    return {"event": "access", **dict(zip(ACCESS_FIELDS, entry[2:], strict=True))}


def _access_record(entry: AccessEntry) -> logging.LogRecord:
    """The ``broker.access`` record an entry stands for (to render it with any formatter)."""
    created, request_id, method, path, status = entry[:5]
    record = access_log.makeRecord(
        access_log.name, logging.INFO, "", 0, access_message(method, path, status), (), None
    )
    record.created, record.msecs = created, (created - int(created)) * 1000
    record.__dict__.update(_access_fields(entry), request_id=request_id)
    return record


class _BatchingHandler(logging.Handler):
    """Hands records to the writer thread: an append to a deque, no lock, no wake-up, never a wait."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.records: deque[logging.LogRecord | AccessEntry] = deque()
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Freeze what belongs to this moment and this thread: the message, the request id, a traceback."""
        record.msg = record.getMessage()
        record.args = None
        if not hasattr(record, "request_id"):
            request_id = current_request_id.get()
            if request_id:
                record.request_id = request_id
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record

    def handle(self, record: logging.LogRecord) -> bool:
        """Queue the record without the handler lock (deque appends are atomic)."""
        if self.filter(record):
            self.enqueue(self.prepare(record))
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)

    def enqueue(self, item: logging.LogRecord | AccessEntry) -> None:
        """Queue a record or an access entry, or drop it when the writer is that far behind (counted,
        reported when it catches up)."""
        if len(self.records) >= self.size:
            self.dropped += 1
        else:
            self.records.append(item)


class BackgroundLogWriter:
    """The thread that formats and writes log records, in batches every ``interval`` seconds (one
    ``write`` per batch); restarted in each forked worker."""

    def __init__(
        self, formatter: logging.Formatter, stream: TextIO, size: int = QUEUE_SIZE, interval: float = 0.05
    ) -> None:
        self._formatter = formatter
        self._stream = stream
        self._interval = interval
        self.handler = _BatchingHandler(size)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start writing (after a fork: records queued in the parent are the parent's to write)."""
        self.handler.records = deque()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._write_all, name="log-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Write what is queued, then stop (bounded: a stuck stream does not hold up the exit)."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join(timeout)
        self._thread = None

    def _write_all(self) -> None:
        while not self._stopping.wait(self._interval):
            self._write_batch()
        self._write_batch()

    def is_root_handler(self) -> bool:
        """Whether log records currently end up here (tests may have replaced the root handlers)."""
        return self.handler in logging.getLogger().handlers

    def _render(self, item: logging.LogRecord | AccessEntry) -> str:
        if isinstance(item, logging.LogRecord):
            return self._formatter.format(item)
        if isinstance(self._formatter, JsonFormatter):
            return self._formatter.format_access(item)
        return self._formatter.format(_access_record(item))

    def _write_batch(self) -> None:
        records = self.handler.records
        lines = []
        dropped, self.handler.dropped = self.handler.dropped, 0
        if dropped:
            lines.append(self._formatter.format(logging.makeLogRecord(_dropped_record(dropped))))
        while records:
            lines.append(self._render(records.popleft()))
        if not lines:
            return
        try:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()
        except Exception:  # a broken stdout must not kill the writer (nor reach the request path)
            pass


def _dropped_record(count: int) -> dict[str, object]:
    return {
        "name": "broker.logging",
        "levelno": logging.WARNING,
        "levelname": "WARNING",
        "msg": f"log queue full: {count} record(s) dropped",
        "dropped": count,
    }


_writer: BackgroundLogWriter | None = None


def configure_logging(fmt: str = "json", level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send logs to stdout as JSON (production) or plain text (``fmt="text"``, the demo), through the
    background writer (started now, and again in each forked child)."""
    global _writer
    formatter: logging.Formatter = (
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    if _writer is not None:
        _writer.stop()
    _writer = BackgroundLogWriter(formatter, stream or sys.stdout)
    _writer.start()
    # Records never show thread or process names, nor the caller's file and line: skip looking them up
    # for each one (finding the caller walks the stack; the logging HOWTO's "Optimization" section).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [_writer.handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def flush_logging() -> None:
    """Write out what is queued (at exit; a worker calls it before ``os._exit``)."""
    if _writer is not None:
        _writer.stop()


def _restart_writer_in_child() -> None:
    # Threads do not survive fork(): without this a worker's records would queue up with no one to write.
    if _writer is not None:
        _writer.start()


os.register_at_fork(after_in_child=_restart_writer_in_child)
atexit.register(flush_logging)

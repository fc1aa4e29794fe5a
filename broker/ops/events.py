"""What the gateway logs: the current request id (on every line), audit events on their own logger
(``broker.audit``) and one access line per request (``broker.access``). Where lines go, and how they are
written without blocking the event loop, is ``broker.ops.logging``.

Fields are copied from the record's extras, never from request data wholesale, so tokens, cookies and
secrets cannot reach the log unless a handler names them (none does).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

# The request being handled by this task: set by the request-id middleware, read by every log line.
current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")
# Its W3C trace id when tracing is on (set by the tracing middleware; empty otherwise), on every log line.
current_trace_id: ContextVar[str] = ContextVar("current_trace_id", default="")
audit_log = logging.getLogger("broker.audit")
access_log = logging.getLogger("broker.access")

AUDIT_EVENTS = frozenset(
    {
        "login_success",
        "login_failure",
        "logout",
        "access_denied",
        "refresh_failure",
        "session_revoked",
        "forward_auth_refused",
    }
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


ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "route", "remote", "user", "company")


def access_message(method: str, path: str, status: int) -> str:
    """The human part of an access line: ``GET /path 200``."""
    return f"{method} {path} {status}"


# The standard attributes an access record never varies, copied into each record's ``__dict__`` (%-style
# formats read the ``__dict__``, so class defaults would not do): the same keys as any record of this
# Python (``taskName`` from 3.12), None where the line never shows them (thread, process, caller). Read-only.
_ACCESS_FIXED: Mapping[str, Any] = MappingProxyType(
    {
        "args": (),
        "levelno": logging.INFO,
        "levelname": logging.getLevelName(logging.INFO),
        "pathname": "",
        "filename": "",
        "module": "",
        "lineno": 0,
        "relativeCreated": 0.0,
    }
)
_PER_RECORD = frozenset({"name", "msg", "created", "msecs"})
ACCESS_RECORD_DEFAULTS: MappingProxyType[str, Any] = MappingProxyType(
    {key: _ACCESS_FIXED.get(key) for key in vars(logging.makeLogRecord({})) if key not in _PER_RECORD}
)


class AccessRecord(logging.LogRecord):
    """A ``LogRecord`` made with only what an access line holds (its public attributes, set directly):
    the standard ``__init__`` also looks up the module name, thread, process and task, and checks its
    arguments, once per request, for a line that shows none of them."""

    def __init__(self, name: str, msg: str) -> None:  # LogRecord.__init__ not called: that is its cost
        created_ns = time.time_ns()
        # A fresh dict copied from the read-only defaults in C (updating from the proxy itself is 2 us).
        self.__dict__ = fields = ACCESS_RECORD_DEFAULTS.copy()
        fields["name"] = name
        fields["msg"] = msg
        fields["created"] = created_ns / 1e9
        fields["msecs"] = (created_ns % 1_000_000_000) // 1_000_000 + 0.0


def access_record(
    method: str,
    path: str,
    status: int,
    duration_ms: float,
    route: str,
    remote: str | None,
    user: str | None,
    company: str | None,
) -> logging.LogRecord:
    """The ``broker.access`` record of one request, with the request id of the current context."""
    # Made here rather than by ``access_log.info``: the logger would look up the caller's file and line
    # (a walk up the stack) for a line that never shows them, once per request.
    record = AccessRecord(access_log.name, access_message(method, path, status))
    fields = record.__dict__
    request_id = current_request_id.get()
    if request_id:
        fields["request_id"] = request_id
    trace_id = current_trace_id.get()
    if trace_id:
        fields["trace_id"] = trace_id
    fields.update(
        event="access",
        method=method,
        path=path,
        status=status,
        duration_ms=duration_ms,
        route=route,
        remote=remote,
        user=user,
        company=company,
    )
    return record


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
    """One access line: method, path (no query), status, duration in ms, route label, remote address, and
    who (``tid:oid``) and which company when a session was used (None otherwise)."""
    access_log.handle(access_record(method, path, status, duration_ms, route, remote, user, company))

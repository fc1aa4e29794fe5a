"""What the gateway logs: the current request id (on every line), audit events on their own logger
(``broker.audit``) and one access line per request (``broker.access``). Where lines go, and how they are
written without blocking the event loop, is ``broker.ops.logging``.

Fields are copied from the record's extras, never from request data wholesale, so tokens, cookies and
secrets cannot reach the log unless a handler names them (none does).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

# The request being handled by this task: set by the request-id middleware, read by every log line.
current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")
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
    record = access_log.makeRecord(
        access_log.name, logging.INFO, "", 0, access_message(method, path, status), (), None
    )
    fields = record.__dict__
    request_id = current_request_id.get()
    if request_id:
        fields["request_id"] = request_id
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

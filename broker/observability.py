"""Logging: one JSON object per line on stdout, with the structured fields handlers attach via ``extra``,
the current request id on every line, and audit events on their own logger (``broker.audit``).

Fields are copied from the record's extras, never from request data wholesale, so tokens, cookies and
secrets cannot reach the log unless a handler names them (none does).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar

# The request being handled by this task: set by the request-id middleware, read by every log line.
current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")
audit_log = logging.getLogger("broker.audit")

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


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extras}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = current_request_id.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool | type(None)) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(fmt: str = "json", level: int = logging.INFO) -> None:
    """Send logs to stdout as JSON (production) or plain text (``fmt="text"``, the demo)."""
    handler = logging.StreamHandler(sys.stdout)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

"""The whoami view: what one request looked like to the demo backend, as JSON or as an HTML page."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from multidict import CIMultiDictProxy

from demo.verify import AssertionReport

HeaderValues = dict[str, str | list[str]]
TIMESTAMP_CLAIMS = frozenset({"iat", "exp", "nbf", "auth_time"})


@dataclass(frozen=True)
class WhoAmI:
    """One request as the demo backend saw it."""

    method: str
    path: str
    query: str
    headers: HeaderValues
    assertion: AssertionReport
    body_bytes: int

    def as_json(self) -> dict[str, Any]:
        """The JSON form of the whoami page."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "assertion": self.assertion.as_json(),
            "body_bytes": self.body_bytes,
        }


def collect_headers(headers: CIMultiDictProxy[str]) -> HeaderValues:
    """All received headers; a repeated name keeps every value, in order, as a list."""
    names: dict[str, str] = {}  # lower-case name -> name as first received
    values: dict[str, list[str]] = {}
    for name, value in headers.items():
        first = names.setdefault(name.lower(), name)
        values.setdefault(first, []).append(value)
    return {name: vals[0] if len(vals) == 1 else vals for name, vals in values.items()}


_CSS = """
:root { color-scheme: light dark; --fg: #1b1b1f; --bg: #f6f7f9; --card: #fff; --muted: #4b5563;
  --line: #d9dde3; --ok: #0b6b2f; --ok-bg: #e3f5e9; --bad: #9b1c1c; --bad-bg: #fde8e8; --accent: #0f5cc0; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e8eaed; --bg: #15171a; --card: #1f2227; --muted: #aab1bb; --line: #353a42;
    --ok: #8fe0a8; --ok-bg: #143321; --bad: #f5a3a3; --bad-bg: #3a1717; --accent: #8ab4f8; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
main { max-width: 60rem; margin: 0 auto; padding: 1.5rem 1rem 3rem; }
h1 { font-size: 1.6rem; margin: 0 0 1rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 .5rem; }
section { background: var(--card); border: 1px solid var(--line); border-radius: .5rem; padding: 1rem; }
.status { padding: .75rem 1rem; border-radius: .4rem; margin: 0 0 .75rem; font-weight: 600; }
.ok { color: var(--ok); background: var(--ok-bg); }
.bad { color: var(--bad); background: var(--bad-bg); }
.muted { color: var(--muted); }
ul.roles { display: flex; flex-wrap: wrap; gap: .4rem; list-style: none; padding: 0; margin: .25rem 0 0; }
ul.roles li { border: 1px solid var(--accent); color: var(--accent); border-radius: 1rem; padding: 0 .6rem; }
.scroll { overflow-x: auto; }
table { width: 100%; border-collapse: collapse; font-size: .92rem; }
th, td { text-align: left; vertical-align: top; padding: .4rem .6rem; border-bottom: 1px solid var(--line); }
th[scope=row] { white-space: nowrap; font-weight: 600; }
td { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; overflow-wrap: anywhere; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; margin: 0; }
dt { font-weight: 600; } dd { margin: 0; overflow-wrap: anywhere; }
@media (max-width: 40rem) { th[scope=row] { white-space: normal; } dl { grid-template-columns: 1fr; } }
"""


def render_page(info: WhoAmI) -> str:
    """The whoami HTML page; every value from the request is escaped."""
    report = info.assertion
    parts = [
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        "<title>whoami · Entra Broker demo backend</title>\n",
        f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n<h1>whoami</h1>\n",
        '<h2 id="identity-heading">Identity</h2>\n<section aria-labelledby="identity-heading">\n',
        _identity(report),
        "</section>\n",
    ]
    if report.valid:
        parts.append(_table("claims", "Verified claims", "Claim", _claim_rows(report.claims)))
    elif report.unverified_claims:
        caption = "Claims NOT verified: shown only to explain the rejection"
        parts.append(_table("claims", caption, "Claim", _claim_rows(report.unverified_claims)))
    if report.header:
        parts.append(_table("jose", "Assertion header", "Parameter", _claim_rows(report.header)))
    parts.append(_request(info))
    parts.append(_table("headers", "Request headers", "Header", _header_rows(info.headers)))
    parts.append("</main>\n</body>\n</html>\n")
    return "".join(parts)


def _identity(report: AssertionReport) -> str:
    if not report.present:
        return '<p class="status bad" role="status">Not signed in: no assertion header was received.</p>\n'
    if not report.valid:
        return (
            '<p class="status bad" role="status">Assertion rejected: '
            f"{escape(report.error or 'unknown reason')}</p>\n"
        )
    claims = report.claims
    who = (
        f"Signed in as {escape(_text(claims.get('name')))} ({escape(_text(claims.get('sub')))})"
        f" — company {escape(_text(claims.get('login_code')))}"
    )
    roles = _roles(claims)
    role_list = (
        '<ul class="roles">' + "".join(f"<li>{escape(r)}</li>" for r in roles) + "</ul>"
        if roles
        else '<span class="muted">none</span>'
    )
    return f'<p class="status ok" role="status">{who}</p>\n<div><strong>Roles</strong> {role_list}</div>\n'


def _roles(claims: dict[str, Any]) -> list[str]:
    roles = claims.get("roles")
    found = [str(r) for r in roles] if isinstance(roles, list) else []
    role = claims.get("role")
    if isinstance(role, str) and role not in found:
        found.insert(0, role)
    return found


def _request(info: WhoAmI) -> str:
    rows = [
        ("Method", info.method),
        ("Path", info.path),
        ("Query", info.query or "(none)"),
        ("Body", f"{info.body_bytes} bytes"),
    ]
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows)
    return (
        '<h2 id="request-heading">Request</h2>\n'
        f'<section aria-labelledby="request-heading"><dl>{items}</dl></section>\n'
    )


def _table(slug: str, title: str, key_label: str, rows: Iterable[tuple[str, str]]) -> str:
    body = "".join(f'<tr><th scope="row">{escape(k)}</th><td>{escape(v)}</td></tr>\n' for k, v in rows)
    if not body:
        body = '<tr><td colspan="2" class="muted">(none)</td></tr>\n'
    return (
        f'<h2 id="{slug}-heading">{escape(title)}</h2>\n'
        f'<section aria-labelledby="{slug}-heading"><div class="scroll"><table>\n'
        f'<thead><tr><th scope="col">{escape(key_label)}</th><th scope="col">Value</th></tr></thead>\n'
        f"<tbody>\n{body}</tbody>\n</table></div></section>\n"
    )


def _claim_rows(claims: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for name, value in claims.items():
        text = _text(value)
        if name in TIMESTAMP_CLAIMS and isinstance(value, int | float) and not isinstance(value, bool):
            text += f" ({_iso(value)})"
        rows.append((name, text))
    return rows


def _header_rows(headers: HeaderValues) -> list[tuple[str, str]]:
    rows = []
    for name, value in headers.items():
        for one in value if isinstance(value, list) else [value]:
            rows.append((name, one))
    return rows


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _iso(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "out of range"

"""A tiny, escaping page renderer: every interpolated value is HTML-escaped unless marked ``Markup``.

The gateway often runs without egress to CDNs, so the layout's CSS is inline and there are no fonts,
scripts or images from elsewhere (a company logo URL is the operator's own choice).
"""

from __future__ import annotations

import html
from importlib import resources
from string import Template

from aiohttp import web


class Markup(str):
    """A string that is already safe HTML (built by this module from escaped parts)."""


def esc(value: object) -> Markup:
    """Escape a value for HTML text or a quoted attribute."""
    return value if isinstance(value, Markup) else Markup(html.escape(str(value), quote=True))


def fill(template: str, **values: object) -> Markup:
    """Substitute ``$name`` placeholders with escaped values."""
    return Markup(Template(template).substitute({k: esc(v) for k, v in values.items()}))


def _layout() -> Template:
    text = resources.files("broker.pages").joinpath("templates/layout.html").read_text(encoding="utf-8")
    return Template(text)


_LAYOUT = _layout()

# The pages hold no secrets but may hold a CSRF token: never cache them, never frame them.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "form-action 'self' https: http://localhost:*; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def page(title: str, body: Markup, status: int = 200, request_id: str = "") -> web.Response:
    """A complete HTML response in the broker's layout."""
    footer = fill("Request ID: <code>$rid</code>", rid=request_id) if request_id else Markup("")
    text = _LAYOUT.substitute(title=esc(title), body=body, footer=footer)
    return web.Response(text=text, status=status, content_type="text/html", headers=PAGE_HEADERS)

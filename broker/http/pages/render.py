"""Render the gateway's pages from Jinja2 templates, every interpolated value HTML-escaped.

The gateway often runs without egress to CDNs, so the layout's CSS is inline and there are no fonts,
scripts or images from elsewhere (a company logo URL is the operator's own choice).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import jinja2
from aiohttp import web

from broker.http import paths

# Autoescape on for every template: values from requests, Entra and the config (company names, notes,
# error descriptions, return URLs) reach the pages, and none may become markup. StrictUndefined makes a
# misspelt or missing value an error instead of an empty string. Templates are files in the package that
# never change at run time: no reloading, so no file checks per request.
_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("broker.http.pages", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    auto_reload=False,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
# The forms and links of the pages name the gateway's own paths from the one module that spells them.
_ENVIRONMENT.globals["paths"] = paths

# Every template compiled once, at import, so a broken template stops start-up rather than a request.
_TEMPLATES: Mapping[str, jinja2.Template] = MappingProxyType(
    {name: _ENVIRONMENT.get_template(name) for name in _ENVIRONMENT.list_templates(extensions=["html"])}
)

# The pages hold no secrets but may hold a CSRF token: never cache them, never frame them.
PAGE_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
        "form-action 'self' https: http://localhost:*; frame-ancestors 'none'; base-uri 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
)


def page(
    template: str, context: Mapping[str, object], status: int = 200, request_id: str = ""
) -> web.Response:
    """A complete HTML response: ``template`` (which extends ``layout.html``) filled with ``context``."""
    text = _TEMPLATES[template].render(context, request_id=request_id)
    return web.Response(text=text, status=status, content_type="text/html", headers=PAGE_HEADERS)

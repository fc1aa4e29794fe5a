"""Render the gateway's pages from Jinja2 templates, every interpolated value HTML-escaped.

The gateway often runs without egress to CDNs, so the layout's CSS is inline and there are no fonts,
scripts or images from elsewhere (a company logo URL is the operator's own choice, and the page's CSP
allows that one image and no other).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from types import MappingProxyType
from typing import TYPE_CHECKING

from aiohttp import web
from markupsafe import Markup, escape

from broker.http import paths
from broker.http.pages.branding import Branding
from broker.http.pages.catalogue import CATALOGUE
from broker.http.pages.language import page_language

if TYPE_CHECKING:
    import jinja2


@cache
def _environment() -> jinja2.Environment:
    """The pages' one Jinja2 environment, made (and Jinja2 imported) when the first page is rendered: ~40 ms
    of every start-up otherwise, in processes that may never show a page.

    Autoescape on for every template: values from requests, Entra and the config (company names, notes,
    error descriptions, return URLs) reach the pages, and none may become markup. StrictUndefined makes a
    misspelt or missing value an error instead of an empty string. Templates are files in the package that
    never change at run time: no reloading, so no file checks per request.
    """
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("broker.http.pages", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    # The forms and links of the pages name the gateway's own paths from the one module that spells them.
    environment.globals["paths"] = paths
    return environment


def template(name: str) -> jinja2.Template:
    """A page's template, compiled on its first use and kept by the environment (``auto_reload`` off).

    Not at import: compiling every template took ~80 ms of each start-up (and of every reload's worker
    spawn) for pages most processes never show. They are package files that only change with the code, so
    ``tests/http/test_pages.py`` compiling each of them is where a broken one is caught.
    """
    return _environment().get_template(name)


def template_names() -> list[str]:
    """Every page template of the package."""
    return _environment().list_templates(extensions=["html"])


# No image may load unless a company's page names its logo: then that one source (branding.logo_source).
BASE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http://localhost:*; "
    "frame-ancestors 'none'; base-uri 'none'"
)

# The pages hold no secrets but may hold a CSRF token: never cache them, never frame them.
PAGE_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "Cache-Control": "no-store",
        "Content-Security-Policy": BASE_CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        # The language follows Accept-Language (language.negotiate): a shared cache must key on it.
        "Vary": "Accept-Language",
    }
)


def translator(language: str) -> Callable[..., Markup]:
    """The templates' ``t(message, **values)``: the catalogue's ``message`` in ``language``, values escaped.

    Only a catalogue entry (our own text) is ever used as a format string: a message that is not in the
    catalogue (it may carry a user's name, with braces) is shown as given, never formatted.
    """
    messages = CATALOGUE[language]

    def t(message: str, **values: object) -> Markup:
        translated = messages.get(message)
        if translated is None:
            return escape(message)
        # Markup.format escapes each value unless it is already Markup (code_element, strong).
        return escape(translated).format(**values)

    return t


def code_element(value: str) -> Markup:
    """``value`` as an escaped ``<code>`` element, to be placed inside a translated sentence."""
    return Markup("<code>{}</code>").format(value)


def strong(value: str) -> Markup:
    """``value`` as an escaped ``<strong>`` element, to be placed inside a translated sentence."""
    return Markup("<strong>{}</strong>").format(value)


def page(
    name: str,
    context: Mapping[str, object],
    status: int = 200,
    request_id: str = "",
    branding: Branding | None = None,
) -> web.Response:
    """A complete HTML response: the template ``name`` (which extends ``layout.html``) filled with
    ``context``."""
    language = page_language()
    brand = branding if branding is not None else Branding()
    text = template(name).render(
        context,
        request_id=request_id,
        language=language,
        t=translator(language),
        code_element=code_element,
        strong=strong,
        brand_css=brand.css,
    )
    headers = {**PAGE_HEADERS, "Content-Language": language}
    if brand.img_src:
        headers["Content-Security-Policy"] = f"{BASE_CSP}; img-src {brand.img_src}"
    return web.Response(text=text, status=status, content_type="text/html", headers=headers)

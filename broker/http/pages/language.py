"""Which language a page is shown in: the browser's ``Accept-Language``, matched against the catalogue.

The choice is made once per request by the request middleware (``choose_page_language``) and read by
``render.page``, so the handlers that build pages need not carry it (a context variable is per request
task, never shared).
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from functools import lru_cache

from broker.http.pages.catalogue import DEFAULT_LANGUAGE, LANGUAGES

# Bounds on a client-controlled header: a real browser sends well under 200 characters and a few tags.
MAX_ACCEPT_LANGUAGE = 512
MAX_LANGUAGE_RANGES = 16

_PAGE_LANGUAGE: ContextVar[str] = ContextVar("page_language", default=DEFAULT_LANGUAGE)


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def negotiate(accept_language: str) -> str:
    """The shipped language the browser prefers most (RFC 9110 §12.5.4 ranges, q-values); else English."""
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(accept_language[:MAX_ACCEPT_LANGUAGE].split(",")[:MAX_LANGUAGE_RANGES]):
        tag, *params = item.split(";")
        # "fr-CA" asks for French: the primary subtag picks the catalogue's language.
        primary = tag.strip().lower().split("-", 1)[0]
        q = _quality(params)
        if q > 0 and primary in LANGUAGES:
            ranked.append((-q, index, primary))
    return min(ranked)[2] if ranked else DEFAULT_LANGUAGE


# Every request asks, and browsers send few distinct values: the answer depends on the (bounded) value alone,
# so it is remembered. A client that invents values only evicts: at most 1,024 keys of 512 characters.
_remembered = lru_cache(maxsize=1024)(negotiate)


def page_language() -> str:
    """The language of the page being rendered for the current request."""
    return _PAGE_LANGUAGE.get()


def choose_page_language(accept_language: str) -> Token[str]:
    """Choose the request's page language before any handler or error page renders (the request
    middleware calls this first); hand the token back to ``forget_page_language`` when the request ends."""
    return _PAGE_LANGUAGE.set(_remembered(accept_language[:MAX_ACCEPT_LANGUAGE]))


def forget_page_language(token: Token[str]) -> None:
    """The request has ended: the next one on this connection's task chooses its own."""
    _PAGE_LANGUAGE.reset(token)

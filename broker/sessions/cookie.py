"""The session cookie: ``__Host-broker`` with Secure, HttpOnly, SameSite=Lax, Path=/.

``__Host-`` cookies must be Secure, and browsers will not store Secure cookies from plain http except on
localhost, so when the public URL is plain http (allowed only for localhost) the prefix and the Secure
flag are dropped; anywhere else the broker refuses plain http at config time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aiohttp import hdrs, web
from multidict import MultiMapping

from broker.sessions.cookie_header import (
    NO_COOKIES,
    CookieMemo,
    Crumb,
    RequestCookies,
    cookie_family,
    forwardable,
    parse_cookie_lines,
)

HOST_PREFIX = "__Host-"
LOGIN_BINDING_MAX_AGE = 600  # as long as login state lives
LOGIN_SUFFIX = "-login"
_BINDING = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


@dataclass(frozen=True)
class CookiePolicy:
    """Name and flags of the session cookie, fixed at start-up from the config; reads Cookie headers."""

    name: str
    secure: bool
    # Every cookie family the broker sets (session and login binding), whatever the prefix or case: none
    # may cross to an upstream, and no upstream may set one.
    families: frozenset[str] = field(init=False)
    memo: CookieMemo = field(default_factory=CookieMemo, compare=False, repr=False)

    def __post_init__(self) -> None:
        family = cookie_family(self.name)
        object.__setattr__(self, "families", frozenset({family, family + LOGIN_SUFFIX}))

    @classmethod
    def for_public_url(cls, configured_name: str, public_url: str) -> CookiePolicy:
        """Secure with the configured name on https; on plain-http localhost, no Secure and no prefix."""
        if public_url.startswith("https://"):
            return cls(configured_name, True)
        return cls(configured_name.removeprefix(HOST_PREFIX), False)

    def cookies(self, headers: MultiMapping[str]) -> RequestCookies:
        """The broker's cookies in these request headers and the Cookie header an upstream may see."""
        lines = tuple(headers.getall(hdrs.COOKIE, ()))
        if not lines:
            return NO_COOKIES
        known = self.memo.get(lines)
        if known is None:
            known = self._read(parse_cookie_lines(lines))
            self.memo.put(lines, known)
        return known

    def _read(self, crumbs: tuple[Crumb, ...]) -> RequestCookies:
        binding = _only_value(crumbs, self.login_name)
        return RequestCookies(
            ticket=_only_value(crumbs, self.name),
            login_binding=binding if binding is not None and _BINDING.match(binding) else None,
            upstream=forwardable(crumbs, self.families),
        )

    def read(self, request: web.Request) -> str | None:
        """The ticket from the request's cookie, if any."""
        return self.cookies(request.headers).ticket

    def set(self, response: web.StreamResponse, ticket: str, max_age: int) -> None:
        """Store the ticket in the browser."""
        response.set_cookie(
            self.name, ticket, max_age=max_age, path="/", secure=self.secure, httponly=True, samesite="Lax"
        )

    @property
    def login_name(self) -> str:
        """The cookie binding a login in progress to the browser that started it (login-CSRF defence)."""
        return self.name + LOGIN_SUFFIX

    def read_login_binding(self, request: web.Request) -> str | None:
        """This browser's login-binding value, if it has a well-formed one."""
        return self.cookies(request.headers).login_binding

    def set_login_binding(self, response: web.StreamResponse, value: str) -> None:
        """Remember the binding for the length of a sign-in (SameSite=Lax: never sent cross-site)."""
        response.set_cookie(
            self.login_name,
            value,
            max_age=LOGIN_BINDING_MAX_AGE,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )

    def clear(self, response: web.StreamResponse) -> None:
        """Remove the cookie from the browser."""
        response.del_cookie(self.name, path="/", secure=self.secure, httponly=True, samesite="Lax")


def _only_value(crumbs: tuple[Crumb, ...], name: str) -> str | None:
    """The value of the cookie named exactly ``name``; None when absent or sent with different values.

    Two values under the broker's name come from a planted cookie (another path or a parent domain):
    neither is trusted, so a planted cookie can neither shadow the real one nor be chosen over it.
    """
    values = {c.value for c in crumbs if c.name == name}
    return values.pop() if len(values) == 1 else None

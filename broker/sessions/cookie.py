"""The session cookie: ``__Host-broker`` with Secure, HttpOnly, SameSite=Lax, Path=/.

``__Host-`` cookies must be Secure, and browsers will not store Secure cookies from plain http except on
localhost, so when the public URL is plain http (allowed only for localhost) the prefix and the Secure
flag are dropped; anywhere else the broker refuses plain http at config time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiohttp import hdrs, web

HOST_PREFIX = "__Host-"
LOGIN_BINDING_MAX_AGE = 600  # as long as login state lives
_BINDING = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
PARSED_MEMO_SIZE = 4096
# (Cookie header value, cookie name) -> that cookie's value: bounded, emptied when full.
_parsed: dict[tuple[str, str], str | None] = {}


@dataclass(frozen=True)
class CookiePolicy:
    """Name and flags of the session cookie, fixed at start-up from the config."""

    name: str
    secure: bool

    @classmethod
    def for_public_url(cls, configured_name: str, public_url: str) -> CookiePolicy:
        """Secure with the configured name on https; on plain-http localhost, no Secure and no prefix."""
        if public_url.startswith("https://"):
            return cls(configured_name, True)
        return cls(configured_name.removeprefix(HOST_PREFIX), False)

    def read(self, request: web.Request) -> str | None:
        """The ticket from the request's cookie, if any.

        aiohttp's cookie parser costs ~19 us per request (as much as the rest of the session check), and a
        browser sends the same ``Cookie`` header request after request: its result is remembered per
        header value. The parsing itself stays aiohttp's.
        """
        raw = request.headers.get(hdrs.COOKIE)
        if raw is None:
            return None
        key = (raw, self.name)
        if key in _parsed:
            return _parsed[key]
        value = request.cookies.get(self.name)
        if len(_parsed) >= PARSED_MEMO_SIZE:
            _parsed.clear()
        _parsed[key] = value
        return value

    def set(self, response: web.StreamResponse, ticket: str, max_age: int) -> None:
        """Store the ticket in the browser."""
        response.set_cookie(
            self.name, ticket, max_age=max_age, path="/", secure=self.secure, httponly=True, samesite="Lax"
        )

    @property
    def login_name(self) -> str:
        """The cookie binding a login in progress to the browser that started it (login-CSRF defence)."""
        return f"{self.name}-login"

    def read_login_binding(self, request: web.Request) -> str | None:
        """This browser's login-binding value, if it has a well-formed one."""
        value = request.cookies.get(self.login_name, "")
        return value if _BINDING.match(value) else None

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

"""Reading ``Cookie`` headers once for both jobs: finding the broker's cookies, and what goes upstream.

One parser serves both, so a cookie is either read as the broker's *and* stripped, or neither: it cannot
be read as a session by one reading and slip upstream under another. The parsing is aiohttp's own
(``request.cookies`` uses the same function); around it the broker only splits:

- every ``Cookie`` line is read (RFC 6265 section 5.4 allows one, but a front proxy may pass several);
- ``,`` separates crumbs too: a front proxy that joins HTTP/2 cookie crumbs as a generic list field
  (RFC 9110 section 5.3) joins them with ``, ``, and RFC 6265 section 4.1.1 keeps ``,`` out of every cookie
  value, so no well-formed cookie is cut by it.

Names are matched for stripping after folding case and the ``__Host-``/``__Secure-`` prefixes, because
some servers fold cookie names and browsers keep prefixed and unprefixed cookies apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# The one private import of another library, on purpose: nothing public reads a Cookie header this way.
# ``http.cookies.SimpleCookie`` drops a whole line on one bad crumb (a session cookie beside it would go
# unread, yet another parser upstream could still read it); aiohttp's public ``BaseRequest.cookies`` is a
# name -> decoded value mapping that keeps only the last of a repeated name and not the value as sent, so
# the upstream's Cookie header could not be rebuilt from it, nor every crumb stripped. This is the function
# behind ``request.cookies``; ``tests/sessions/test_cookie_header.py`` fails if an upgrade moves it or
# changes its reading, and it is used only by ``parse_cookie_lines``.
from aiohttp._cookie_helpers import parse_cookie_header

# Browsers give these prefixes meaning (RFC 6265bis section 4.1.3); a name differing only by one is
# another cookie to a browser, but the same family to us.
NAME_PREFIXES = ("__host-http-", "__host-", "__secure-", "__http-")
MEMO_SIZE = 4096  # distinct Cookie headers remembered per gateway (a browser repeats its own)


def cookie_family(name: str) -> str:
    """The name with case and browser prefixes folded away: ``__Secure-BROKER`` -> ``broker``."""
    folded = name.strip(" \t").lower()
    for prefix in NAME_PREFIXES:
        if folded.startswith(prefix):
            return folded[len(prefix) :]
    return folded


@dataclass(frozen=True)
class Crumb:
    """One ``name=value`` of a Cookie header: the value as read, and as it was sent."""

    name: str
    value: str
    coded: str


def parse_cookie_lines(lines: Iterable[str]) -> tuple[Crumb, ...]:
    """Every crumb of every Cookie line, with ``,``-joined crumbs read as separate ones."""
    crumbs: list[Crumb] = []
    for line in lines:
        for piece in line.split(","):
            crumbs.extend(Crumb(name, m.value, m.coded_value) for name, m in parse_cookie_header(piece))
    return tuple(crumbs)


def forwardable(crumbs: Sequence[Crumb], families: frozenset[str]) -> str | None:
    """The Cookie header an upstream may see: every crumb but the broker's, or None when none is left.

    Rebuilt from what the parser read, so nothing it did not read as a cookie passes. A quoted value
    holding ``;`` is dropped too: a naive upstream parser would split it and could find a ticket inside.
    """
    kept = [
        f"{c.name}={c.coded}" for c in crumbs if cookie_family(c.name) not in families and ";" not in c.coded
    ]
    return "; ".join(kept) if kept else None


def names_set_by(set_cookie: str) -> list[str]:
    """The cookie families a ``Set-Cookie``/``Set-Cookie2`` line could make a browser store.

    Per RFC 6265bis section 5.6 the name is what precedes the first ``=`` of the part before the first
    ``;``. A nameless cookie (``=broker=x`` or ``broker``) is sent back as its bare value, which servers
    then read as ``broker=x``: its value's name counts too. Comma pieces are checked as well, for a
    ``Set-Cookie2`` list or lines some intermediary folded into one.
    """
    names: list[str] = []
    for piece in set_cookie.split(","):
        pair = piece.split(";", 1)[0]
        name, equals, value = pair.partition("=")
        names.append(cookie_family(name))
        if equals and not name.strip(" \t"):
            names.append(cookie_family(value.partition("=")[0]))
    return names


@dataclass(frozen=True)
class RequestCookies:
    """What a request's Cookie lines hold for the broker, read once: its cookies and what goes upstream."""

    ticket: str | None
    login_binding: str | None
    upstream: str | None


NO_COOKIES = RequestCookies(None, None, None)


class CookieMemo:
    """Parsed Cookie headers, by their raw lines: owned by one gateway, bounded, emptied when full.

    The parser costs about as much as the rest of the session check, and a browser sends the same header
    request after request. The keys hold tickets, as the session cache does; they die with the gateway.
    """

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self._size = size
        self._entries: dict[tuple[str, ...], RequestCookies] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, lines: tuple[str, ...]) -> RequestCookies | None:
        """What was remembered for these lines, if anything."""
        return self._entries.get(lines)

    def put(self, lines: tuple[str, ...], value: RequestCookies) -> None:
        """Remember ``value`` for these lines."""
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[lines] = value

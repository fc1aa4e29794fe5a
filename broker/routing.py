"""Route matching: host (exact, ``*.suffix`` or ``*``) then the longest path prefix. Pure.

Matching runs on the path as an upstream will read it: the *raw* request path, percent-decoded once,
duplicate slashes collapsed. Paths that different servers read differently are refused outright
(``matching_path`` returns None -> 400): dot segments in any spelling (``..``, ``%2e%2e``, ``..;`` as
Tomcat reads it), backslashes (IIS reads them as ``/``), control characters, and double-encoded dots,
slashes and backslashes (``%252e``) that a server decoding twice would turn into one of those.
Browsers never send such paths, so refusing them costs nothing and removes a whole class of "public
path" bypasses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote

from broker.config.schema import RouteConfig


def normalise_path(path: str) -> str:
    """Resolve ``.``/``..`` segments and collapse repeated slashes; never climbs above ``/``."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    trailing = "/" if path.endswith(("/", "/.", "/..")) and segments else ""
    return "/" + "/".join(segments) + trailing


_DOUBLE_ENCODED = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)


def matching_path(raw_path: str, *, strip_params: bool = True) -> str | None:
    """The path to match routes on, or None when the path is ambiguous (see the module docstring).

    ``raw_path`` is the request target's path as sent (no query). aiohttp's own decoded ``path`` is not
    used: for ``//admin`` it is empty, because ``//`` reads as the start of an authority.
    """
    decoded = unquote(raw_path.split("?", 1)[0])
    if (
        not decoded.startswith("/")
        or "\\" in decoded
        or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in decoded)
    ):
        return None
    if _DOUBLE_ENCODED.search(decoded):
        return None  # "%252e" decodes to "%2e": a server that decodes twice would see a dot segment
    segments = [segment for segment in decoded.split("/") if segment]
    if any(segment.split(";", 1)[0] in (".", "..") for segment in segments):
        return None
    # Path parameters (";jsessionid=…") are dropped for matching: servers such as Tomcat ignore them, so
    # "/admin;x" must match the "/admin" route, not fall through to a public "/". Other servers keep them,
    # so the caller lets a request through anonymously only if both readings are public.
    ends_as_directory = decoded.endswith("/") or (strip_params and decoded.rsplit("/", 1)[-1].startswith(";"))
    if strip_params:
        segments = [base for base in (segment.split(";", 1)[0] for segment in segments) if base]
    trailing = "/" if ends_as_directory and segments else ""
    return "/" + "/".join(segments) + trailing


def prefix_matches(prefix: str, path: str) -> bool:
    """``/app`` matches ``/app`` and ``/app/x`` but not ``/apple`` (segment boundary)."""
    if prefix == "/" or path == prefix:
        return True
    base = prefix if prefix.endswith("/") else prefix + "/"
    return path.startswith(base)


def host_matches(pattern: str, host: str) -> bool:
    """Exact host, ``*.example.com`` (one or more labels), or ``*`` for any host."""
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def split_host(host_header: str) -> str:
    """Lowercased host without port (IPv6 literals keep their brackets)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@dataclass(frozen=True)
class Route:
    """A configured route, with what is derived from it computed once at start-up."""

    index: int
    config: RouteConfig
    host: str
    prefix: str

    @property
    def login_code(self) -> str | None:
        """The company whose login anonymous users are sent to, when the route names exactly one."""
        if self.config.login:
            return self.config.login
        codes = self.config.allow.login_codes
        return codes[0] if len(codes) == 1 else None

    @property
    def label(self) -> str:
        """How metrics and logs name the route: its host and path prefix (bounded by the config)."""
        return f"{self.host}{self.prefix}"

    def audience(self, host: str) -> str:
        """The assertion audience: configured, else ``https://{host}{prefix}`` (routes on a host differ)."""
        return self.config.audience or f"https://{host}{self.prefix.rstrip('/') or ''}"

    def is_public_path(self, path: str) -> bool:
        """Paths inside an enforced route that need no session (``public_paths``)."""
        return any(prefix_matches(p, path) for p in self.config.public_paths)

    def admits_anonymous(self, path: str) -> bool:
        """A public route, or a ``public_paths`` entry of a protected one: no session needed."""
        return self.config.auth == "public" or self.is_public_path(path)


def candidate_prefixes(path: str) -> Iterator[str]:
    """Every prefix ``p`` with ``prefix_matches(p, path)``, longest first: the path itself, then each
    ancestor with and without its trailing slash, then ``/``. As many as the path has segments."""
    yield path
    i = path.rfind("/", 0, len(path) - 1) if path.endswith("/") else path.rfind("/")
    if path.endswith("/") and len(path) > 1:
        yield path[:-1]
    while i > 0:
        yield path[: i + 1]
        yield path[:i]
        i = path.rfind("/", 0, i)
    if path != "/":
        yield "/"


class _PrefixIndex:
    """The routes of one host pattern by prefix: the longest matching prefix in O(path segments)."""

    def __init__(self) -> None:
        self._by_prefix: dict[str, Route] = {}

    def __len__(self) -> int:
        return len(self._by_prefix)

    def add(self, route: Route) -> None:
        self._by_prefix.setdefault(route.prefix, route)  # the first configured wins a duplicate

    def longest(self, path: str) -> Route | None:
        for prefix in candidate_prefixes(path):
            route = self._by_prefix.get(prefix)
            if route is not None:
                return route
        return None


class RouteTable:
    """All routes, indexed so that a lookup costs the same with 10 routes or 10,000.

    Precedence: an exact host beats ``*.suffix`` beats ``*``; within that, the longest path prefix wins
    (among ``*.suffix`` patterns, whichever of the matching ones has the longest prefix; on a tie, the one
    configured first). Lookups walk the request path's own prefixes and the host's own suffixes, never
    the list of routes.
    """

    def __init__(self, routes: list[RouteConfig]) -> None:
        self.routes = [Route(i, r, r.host.lower(), normalise_path(r.path)) for i, r in enumerate(routes)]
        self._exact: dict[str, _PrefixIndex] = {}
        self._suffixes: dict[str, _PrefixIndex] = {}  # "*.example.com" is stored as ".example.com"
        self._any = _PrefixIndex()
        for route in self.routes:
            if route.host == "*":
                self._any.add(route)
            elif route.host.startswith("*."):
                self._suffixes.setdefault(route.host[1:], _PrefixIndex()).add(route)
            else:
                self._exact.setdefault(route.host, _PrefixIndex()).add(route)

    def _matching_suffixes(self, host: str) -> Iterator[_PrefixIndex]:
        """The ``*.suffix`` indexes whose pattern matches ``host`` (one or more labels before the suffix)."""
        dot = host.find(".")
        while dot > 0:
            index = self._suffixes.get(host[dot:])
            if index is not None:
                yield index
            dot = host.find(".", dot + 1)

    def match(self, host: str, path: str) -> Route | None:
        """The route for a request, or None (unknown host or no prefix matched)."""
        host = split_host(host)
        exact = self._exact.get(host)
        route = exact.longest(path) if exact is not None else None
        if route is not None:
            return route
        if self._suffixes:
            found = [r for index in self._matching_suffixes(host) if (r := index.longest(path)) is not None]
            if found:
                return min(found, key=lambda r: (-len(r.prefix), r.index))
        return self._any.longest(path)

    def routes_host(self, host: str) -> bool:
        """Whether any route serves this host (return URLs may only point at such hosts)."""
        host = split_host(host)
        return host in self._exact or any(True for _ in self._matching_suffixes(host)) or len(self._any) > 0

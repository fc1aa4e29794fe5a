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


class RouteTable:
    """All routes, ordered so the most specific host and the longest prefix are tried first."""

    def __init__(self, routes: list[RouteConfig]) -> None:
        compiled = [Route(i, r, r.host.lower(), normalise_path(r.path)) for i, r in enumerate(routes)]

        def specificity(route: Route) -> tuple[int, int]:
            host_rank = 0 if route.host == "*" else (1 if route.host.startswith("*.") else 2)
            return (-host_rank, -len(route.prefix))

        self._routes = sorted(compiled, key=specificity)

    def match(self, host: str, path: str) -> Route | None:
        """The route for a request, or None (unknown host or no prefix matched)."""
        host = split_host(host)
        for route in self._routes:
            if host_matches(route.host, host) and prefix_matches(route.prefix, path):
                return route
        return None

    def routes_host(self, host: str) -> bool:
        """Whether any route serves this host (return URLs may only point at such hosts)."""
        host = split_host(host)
        return any(host_matches(r.host, host) for r in self._routes)

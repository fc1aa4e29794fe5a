"""Route matching: host (exact, ``*.suffix`` or ``*``) then the longest path prefix. Pure.

Matching runs on the path as an upstream will read it: the *raw* request path, percent-decoded once,
duplicate slashes collapsed. Paths that different servers read differently are refused outright
(``matching_path`` returns None -> 400): dot segments in any spelling (``..``, ``%2e%2e``, ``..;`` as
Tomcat reads it), backslashes (IIS reads them as ``/``), control characters, double-encoded dots,
slashes and backslashes (``%252e``) that a server decoding twice would turn into one of those, IIS ``%u``
escapes, segments made only of dots and spaces (Windows reads ``...`` as nothing), and Unicode look-alikes
of separators (fullwidth ``／``). Browsers never send such paths, so refusing them costs nothing and removes
a whole class of "public path" bypasses.

The route that decides must be the route the upstream serves (issue 12):

- a route ``/x/`` also governs ``/x`` (ASP.NET Core, Express and most apps serve both alike);
- routes whose upstream declares ``upstream_paths`` (case-insensitive, Windows segment rules) are matched
  on the path folded the same way (``broker/grammar/path_folding.py``), so ``/ADMIN./x`` is ``/admin/``'s;
- whatever is declared, a path that under the widest folding (case, trailing dots and spaces, Unicode
  look-alikes) would be governed by *another* route to the *same upstream origin* is ambiguous:
  ``RouteTable.match`` raises ``AmbiguousRoute`` and the request gets a 400. Fail-closed and cheap: only
  crafted spellings (``/ADMIN/`` next to a route ``/admin/``) ever differ.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from broker.config.schema import RouteConfig
from broker.grammar.host import host_without_port
from broker.grammar.path_folding import LITERAL, PathRules, fold, widest_fold


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


# "%2e"/"%2f"/"%5c" left after one decoding: a server decoding twice would see a dot segment or a separator.
# "%uXXXX": IIS's non-standard escape, decoded by IIS but by nobody else.
_DOUBLE_ENCODED = re.compile(r"%(2e|2f|5c|u[0-9a-f]{4})", re.IGNORECASE)


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
        return None
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
    path = "/" + "/".join(segments) + trailing
    # A segment some server folds into a separator, an empty or a dot segment ("...", "%20", "．．") is
    # read differently by different servers: refused like the dot segments above.
    return path if widest_fold(path) is not None else None


def prefix_matches(prefix: str, path: str) -> bool:
    """``/app`` matches ``/app`` and ``/app/x`` but not ``/apple`` (segment boundary)."""
    if prefix == "/" or path == prefix:
        return True
    base = prefix if prefix.endswith("/") else prefix + "/"
    return path.startswith(base)


def route_governs(prefix: str, path: str) -> bool:
    """Whether a route with this prefix governs the path: ``prefix_matches``, and ``/x/`` also governs
    ``/x`` exactly (upstreams serve both alike). ``public_paths`` keep the literal ``prefix_matches``."""
    return prefix_matches(prefix, path) or (len(prefix) > 1 and prefix.endswith("/") and path == prefix[:-1])


def split_host(host_header: str) -> str:
    """The normalised host without port (lower-cased; IPv6 literals compressed, in brackets); ``""`` when the
    header is not a valid ``host[:port]`` (the request-id middleware refuses those before routing)."""
    return host_without_port(host_header.strip()) or ""


def upstream_rules(routes: list[RouteConfig]) -> dict[str, PathRules]:
    """Per upstream origin, the union of what its routes declare (an upstream folds for all its routes)."""
    rules: dict[str, PathRules] = {}
    for route in routes:
        origin = route.upstream_key
        known = rules.get(origin, LITERAL)
        rules[origin] = PathRules(
            case_insensitive=known.case_insensitive or route.upstream_paths.case_insensitive,
            windows=known.windows or route.upstream_paths.windows,
        )
    return rules


def normalise_route_host(pattern: str) -> str:
    """A configured host pattern in the spelling requests are compared in (``[::0001]`` is ``[::1]``)."""
    if pattern == "*" or pattern.startswith("*."):
        return pattern.lower()
    return host_without_port(pattern) or pattern.lower()


class AmbiguousRoute(Exception):
    """The path could be read by its upstream as a path of another route: answered with 400."""


@dataclass(frozen=True)
class Route:
    """A configured route, with what is derived from it computed once at start-up."""

    index: int
    config: RouteConfig
    host: str
    prefix: str
    origin: str = ""
    rules: PathRules = PathRules()

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

    def audience(self, request_host: str) -> str:
        """The assertion audience: configured, else ``https://{host}{prefix}`` (routes on a host differ).

        The host is the route's own normalised host; only a wildcard route takes the request's, normalised
        (lower-case, no port, IPv6 in brackets), so two spellings of one host get one audience.
        """
        if self.config.audience:
            return self.config.audience
        host = self.host if "*" not in self.host else split_host(request_host)
        return f"https://{host}{self.prefix.rstrip('/')}"

    def is_public_path(self, path: str) -> bool:
        """Paths inside an enforced route that need no session (``public_paths``)."""
        return any(prefix_matches(p, path) for p in self.config.public_paths)

    def admits_anonymous(self, path: str) -> bool:
        """A public route, or a ``public_paths`` entry of a protected one: no session needed."""
        return self.config.auth == "public" or self.is_public_path(path)


def candidate_prefixes(path: str) -> Iterator[str]:
    """Every prefix ``p`` with ``route_governs(p, path)``, longest first: the path with a trailing slash,
    the path itself, then each ancestor with and without its trailing slash, then ``/``. As many as the path
    has segments (times two)."""
    if not path.endswith("/"):
        yield path + "/"
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


def _rank(route: Route) -> tuple[int, bool, int]:
    """Deeper prefixes win, ``/x/`` beats ``/x``, then configuration order."""
    return (route.prefix.count("/") - route.prefix.endswith("/"), route.prefix.endswith("/"), -route.index)


class _PrefixIndex:
    """The routes of one host pattern by prefix: the longest matching prefix in O(path segments).

    Routes are keyed by their prefix folded as their upstream reads paths (one table per distinct folding,
    at most four), and, per upstream origin, by the widest folding, to detect ambiguous paths.
    """

    def __init__(self) -> None:
        self._by_rules: dict[PathRules, dict[str, Route]] = {}
        self._widest: dict[str, dict[str, list[Route]]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, route: Route) -> None:
        keyed = self._by_rules.setdefault(route.rules, {})
        if keyed.setdefault(fold(route.prefix, route.rules), route) is not route:
            return  # the first configured wins a duplicate; the shadowed one never decides anything
        self._count += 1
        widest = widest_fold(route.prefix)
        if widest is not None:  # config validation refuses prefixes without one
            self._widest.setdefault(route.origin, {}).setdefault(widest, []).append(route)

    def longest(self, path: str) -> Route | None:
        best: Route | None = None
        for rules, keyed in self._by_rules.items():
            for prefix in candidate_prefixes(fold(path, rules)):
                route = keyed.get(prefix)
                if route is not None:
                    if best is None or _rank(route) > _rank(best):
                        best = route
                    break
        return best

    def widest_hits(self, origin: str, widest: str) -> list[Route]:
        """The routes to ``origin`` that would govern the path an upstream folding everything reads."""
        keyed = self._widest.get(origin)
        if keyed is None:
            return []
        for prefix in candidate_prefixes(widest):
            found = keyed.get(prefix)
            if found is not None:
                return found
        return []


# ``RouteTable.lookup`` remembers this many (Host, path) answers per table (per config), for paths of at most
# MEMO_MAX_PATH characters: a browser asks for the same few paths again and again, and reading the path
# (decoded, checked, folded) and matching it (host normalised, every tier walked) costs ~10 microseconds.
# Bounded both ways: at most about 2,048 x (300 + 512) characters, whatever a client sends.
ROUTE_MEMO = 2048
MEMO_MAX_PATH = 512


class RouteTable:
    """All routes, indexed so that a lookup costs the same with 10 routes or 10,000.

    Precedence: an exact host beats ``*.suffix`` beats ``*``; within that, the longest path prefix wins
    (among ``*.suffix`` patterns, whichever of the matching ones has the longest prefix; on a tie, the one
    configured first). Lookups walk the request path's own prefixes and the host's own suffixes, never
    the list of routes.
    """

    def __init__(self, routes: list[RouteConfig]) -> None:
        rules = upstream_rules(routes)
        self.routes = [
            Route(i, r, normalise_route_host(r.host), normalise_path(r.path), o, rules[o])
            for i, r in enumerate(routes)
            for o in (r.upstream_key,)
        ]
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
        # The table never changes (a reload builds a new one), so an answer stays right as long as it.
        self._remembered = lru_cache(maxsize=ROUTE_MEMO)(self._lookup)

    def lookup(self, host: str, raw_path: str) -> tuple[Route | None, str] | None:
        """The route for a request's Host and path as sent (no query), and the matching path it was found
        by (``matching_path``); None when either reading is ambiguous. Remembered for short paths."""
        if len(raw_path) > MEMO_MAX_PATH:
            return self._lookup(host, raw_path)
        return self._remembered(host, raw_path)

    def _lookup(self, host: str, raw_path: str) -> tuple[Route | None, str] | None:
        path = matching_path(raw_path)
        if path is None:
            return None
        try:
            return self.match(host, path), path
        except AmbiguousRoute:
            return None

    def _matching_suffixes(self, host: str) -> Iterator[_PrefixIndex]:
        """The ``*.suffix`` indexes whose pattern matches ``host`` (one or more labels before the suffix)."""
        dot = host.find(".")
        while dot > 0:
            index = self._suffixes.get(host[dot:])
            if index is not None:
                yield index
            dot = host.find(".", dot + 1)

    def _tiers(self, host: str) -> Iterator[list[_PrefixIndex]]:
        """The indexes for a host, most specific first: exact host, matching ``*.suffix`` patterns, ``*``."""
        exact = self._exact.get(host)
        if exact is not None:
            yield [exact]
        if self._suffixes:
            suffixes = list(self._matching_suffixes(host))
            if suffixes:
                yield suffixes
        yield [self._any]

    def match(self, host: str, path: str) -> Route | None:
        """The route for a request, or None (unknown host or no prefix matched).

        Raises ``AmbiguousRoute`` when the upstream of the route found could read the path as a path of
        another of its routes (see the module docstring).
        """
        host = split_host(host)
        if not host:
            return None
        widest = widest_fold(path)
        if widest is None:
            raise AmbiguousRoute(path)
        passed: list[list[_PrefixIndex]] = []
        for tier in self._tiers(host):
            found = [r for index in tier if (r := index.longest(path)) is not None]
            if not found:
                passed.append(tier)
                continue
            route = max(found, key=_rank)
            # A more specific host that would govern the folded path sends nothing to this route.
            if any(index.widest_hits(route.origin, widest) for earlier in passed for index in earlier):
                raise AmbiguousRoute(path)
            rivals = [r for index in tier for r in index.widest_hits(route.origin, widest)]
            if not _same_decision(route, rivals):
                raise AmbiguousRoute(path)
            return route
        return None

    def routes_host(self, host: str) -> bool:
        """Whether any route serves this host (return URLs may only point at such hosts)."""
        host = split_host(host)
        if not host:
            return False
        return host in self._exact or any(True for _ in self._matching_suffixes(host)) or len(self._any) > 0


def _same_decision(route: Route, rivals: list[Route]) -> bool:
    """Whether the deepest rivals under the widest folding are the route itself or routes of the same
    literal prefix (then configuration order decides, as for any equal prefixes; folding changes nothing)."""
    deepest = max(_rank(r)[:2] for r in rivals)
    return all(r is route or r.prefix == route.prefix for r in rivals if _rank(r)[:2] == deepest) and (
        _rank(route)[:2] == deepest
    )

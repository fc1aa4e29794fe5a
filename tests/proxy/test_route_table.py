"""The indexed ``RouteTable`` against the plain rule it implements, on generated route sets and requests.

The reference below is the definition: sort routes by host kind (exact, then ``*.suffix``, then ``*``) and
prefix length, keep configuration order on ties, and take the first whose host pattern matches and whose
prefix governs the path (``/x/`` also governs ``/x``).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.config.schema import RouteConfig
from broker.proxy.routing import (
    Route,
    RouteTable,
    candidate_prefixes,
    route_governs,
    split_host,
)

SEGMENTS = st.sampled_from(["a", "b", "app", "apple", "api", "x"])
PATHS = (
    st.lists(SEGMENTS, max_size=4)
    .flatmap(lambda segs: st.sampled_from(["/" + "/".join(segs), "/" + "/".join(segs) + "/"]))
    .map(lambda p: "/" if p == "//" else p)
)
HOST_PATTERNS = st.sampled_from(
    ["h.example.com", "example.com", "*.example.com", "*.h.example.com", "*", "o"]
)
HOSTS = st.sampled_from(
    ["h.example.com", "example.com", "a.h.example.com", "other.org", "o", "x.example.com", "H.Example.com:80"]
)


def host_matches(pattern: str, host: str) -> bool:
    """The reference host rule: exact host, ``*.example.com`` (one or more labels), or ``*`` for any host."""
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def reference(routes: list[Route], host: str, path: str) -> Route | None:
    def specificity(route: Route) -> tuple[int, int]:
        host_rank = 0 if route.host == "*" else (1 if route.host.startswith("*.") else 2)
        return (-host_rank, -len(route.prefix))

    host = split_host(host)
    for route in sorted(routes, key=specificity):
        if host_matches(route.host, host) and route_governs(route.prefix, path):
            return route
    return None


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.tuples(HOST_PATTERNS, PATHS), min_size=1, max_size=12), HOSTS, PATHS)
def test_indexed_lookup_equals_the_rule(routes: list[tuple[str, str]], host: str, path: str) -> None:
    table = RouteTable([RouteConfig(host=h, upstream="http://u", path=p) for h, p in routes])
    expected = reference(table.routes, host, path)
    got = table.match(host, path)
    assert (got.index if got else None) == (expected.index if expected else None)
    assert table.routes_host(host) == any(host_matches(r.host, split_host(host)) for r in table.routes)


@given(PATHS, PATHS)
def test_candidate_prefixes_are_exactly_the_matching_ones(prefix: str, path: str) -> None:
    assert (prefix in set(candidate_prefixes(path))) == route_governs(prefix, path)
    lengths = [len(p) for p in candidate_prefixes(path)]
    assert lengths == sorted(lengths, reverse=True)

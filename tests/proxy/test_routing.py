"""Pure routing decisions: route matching on normalised paths, and the path an upstream would read."""

from __future__ import annotations

import pytest

from broker.config.schema import RouteConfig
from broker.proxy.routing import RouteTable, matching_path, normalise_path

TABLE = RouteTable(
    [
        RouteConfig(host="app.example.com", upstream="http://a", path="/"),
        RouteConfig(host="app.example.com", upstream="http://b", path="/admin"),
        RouteConfig(host="*.example.com", upstream="http://c", path="/"),
        RouteConfig(host="app.example.com", upstream="http://d", path="/public/", auth="public"),
    ]
)


@pytest.mark.parametrize(
    ("host", "path", "upstream"),
    [
        ("app.example.com", "/", "http://a"),
        ("APP.example.com:443", "/admin/users", "http://b"),
        ("app.example.com", "/administrator", "http://a"),  # segment boundary
        ("app.example.com", "/public/x", "http://d"),
        ("other.example.com", "/admin", "http://c"),
    ],
)
def test_match(host: str, path: str, upstream: str) -> None:
    route = TABLE.match(host, normalise_path(path))
    assert route is not None and route.config.upstream == upstream


def test_unknown_host_matches_nothing() -> None:
    assert TABLE.match("evil.com", "/") is None
    assert TABLE.match("example.com", "/") is None  # "*.example.com" needs a label


@pytest.mark.parametrize(
    "path", ["/public/../admin", "/public/./../admin/", "//admin", "/public/../../admin", "/./admin"]
)
def test_traversal_cannot_escape_to_a_public_route(path: str) -> None:
    route = TABLE.match("app.example.com", normalise_path(path))
    assert route is not None and route.config.upstream == "http://b"


@pytest.mark.parametrize(
    "raw",
    [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E%2Fadmin",
        "/public%2F..%2Fadmin",
        "/public/..;/admin",
        "/public/.;x=1/admin",
        "/public\\..\\admin",
        "/public%5c..%5cadmin",
        "/a/./b",
        "/a%252e%252e/b",
        "/a%252fb",
        "/%0d%0aSet-Cookie:x",
        "/a%00b",
        "relative",
    ],
)
def test_ambiguous_paths_are_refused(raw: str) -> None:
    assert matching_path(raw) is None


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("/", "/"),
        ("//admin", "/admin"),
        ("/a//b/", "/a/b/"),
        ("/x%2Fy", "/x/y"),
        ("/caf%C3%A9?q=1", "/café"),
        ("/public/file;jsessionid=1", "/public/file"),
        ("/admin;", "/admin"),
        ("/admin;x/y", "/admin/y"),
    ],
)
def test_matching_path_reads_the_raw_path_as_an_upstream_would(raw: str, path: str) -> None:
    assert matching_path(raw) == path


def test_double_slash_cannot_reach_a_protected_prefix_through_a_public_route() -> None:
    table = RouteTable(
        [
            RouteConfig(host="h", upstream="http://u", path="/", auth="public"),
            RouteConfig(host="h", upstream="http://u", path="/admin"),
        ]
    )
    path = matching_path("//admin/users")
    assert path is not None
    route = table.match("h", path)
    assert route is not None and route.config.auth == "enforce"

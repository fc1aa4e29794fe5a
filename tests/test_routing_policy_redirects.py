"""Pure decisions: route matching on normalised paths, return-URL validation, role mapping."""

from __future__ import annotations

import pytest

from broker.config.schema import AllowConfig, RolesConfig, RouteConfig
from broker.http.redirects import ReturnTargets, safe_return_to
from broker.identity.policy import decide_access, map_roles
from broker.proxy.routing import RouteTable, matching_path, normalise_path
from broker.sessions.model import Session

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


def routed(origin: str) -> bool:
    return origin == "https://app.example.com"


@pytest.mark.parametrize("target", ["/", "/docs?x=1", "https://app.example.com/x", "/a/b#frag"])
def test_safe_return_urls_are_kept(target: str) -> None:
    assert safe_return_to(target, routed) == target


@pytest.mark.parametrize(
    "target",
    [
        "//evil.com",
        "/\\evil.com",
        "\\\\evil.com",
        "https:evil.com",
        "https://evil.com/",
        "http://evil.com",
        "/%2f%2fevil.com",
        "/%5cevil.com",
        "%2f%2fevil.com",
        "/\r\nLocation: x",
        "/\tevil",
        "javascript:alert(1)",
        "https://app.example.com@evil.com/",
        "https://user:pw@app.example.com/",
        " //evil.com",
        "",
        "ftp://app.example.com/",
        "/" + "a" * 3000,
    ],
)
def test_open_redirects_are_refused(target: str) -> None:
    assert safe_return_to(target, routed) == "/"


SERVED = ReturnTargets.served(
    "https://gw.example.com", ["app.example.com", "*", "*.example.com", "[::1]", "Wiki.Example.com"]
)


@pytest.mark.parametrize(
    "target",
    [
        "https://gw.example.com/x",
        "https://GW.example.com:443/x",
        "https://app.example.com/",
        "https://wiki.example.com/a",
        "https://[::1]/",
    ],
)
def test_return_urls_on_served_origins_are_kept(target: str) -> None:
    assert safe_return_to(target, SERVED.allows) == target


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",  # only a "*" route names it
        "https://other.example.com/",  # only "*.example.com" names it
        "http://app.example.com/",  # another scheme of a routed host
        "https://app.example.com:8443/",  # another port of a routed host
        "http://gw.example.com:443/",
        "https://app.example.com:99999/",
    ],
)
def test_catch_all_routes_other_ports_and_schemes_are_not_return_targets(target: str) -> None:
    assert safe_return_to(target, SERVED.allows) == "/"


def test_return_targets_follow_the_public_urls_port() -> None:
    served = ReturnTargets.served("http://localhost:8080", ["127.0.0.1", "*"])
    assert served.origins == frozenset({"http://localhost:8080", "http://127.0.0.1:8080"})


RULES = RolesConfig(
    order=["reader", "contributor", "writer", "admin"],
    default="reader",
    app_roles={"Wiki.Write": "writer", "Wiki.Admin": "admin"},
    groups={"g-contrib": "contributor"},
)


def test_most_privileged_role_wins() -> None:
    assert map_roles(RULES, ["Wiki.Write", "Wiki.Admin"], ["g-contrib"]) == (
        "admin",
        ["contributor", "writer", "admin"],
    )


def test_default_role_when_none_mapped() -> None:
    assert map_roles(RULES, ["Unknown"], []) == ("reader", ["reader"])
    assert map_roles(RolesConfig(order=["a"]), [], []) == (None, [])


def test_access_requires_every_allow_dimension() -> None:
    route = RouteTable(
        [
            RouteConfig(
                host="h", upstream="http://u", allow=AllowConfig(login_codes=["contoso"], roles=["admin"])
            )
        ]
    ).match("h", "/")
    assert route is not None
    admin = Session(login_code="contoso", tid="t", oid="o", roles=["admin"])
    assert decide_access(route, admin).allowed
    assert not decide_access(route, Session(login_code="contoso", tid="t", oid="o", roles=["reader"])).allowed
    assert not decide_access(route, Session(login_code="fabrikam", tid="t", oid="o", roles=["admin"])).allowed


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

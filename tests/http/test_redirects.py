"""Pure return-URL decisions: where a sign-in may send the browser back, every open redirect refused."""

from __future__ import annotations

import pytest

from broker.http.redirects import ReturnTargets, safe_return_to


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

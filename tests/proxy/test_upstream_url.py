"""Upstream URLs: targets, strip_prefix / rewrite, encoding kept as sent (pure, no network)."""

from __future__ import annotations

import pytest

from broker.config.schema import RouteConfig
from broker.proxy.upstream_url import mapped_path, parse_upstream, replacement_for, upstream_url


def test_http_targets_keep_their_base_path() -> None:
    target = parse_upstream("https://10.0.0.5:8443/app")
    url = upstream_url(target, "/", None, "/x/y", "a=1")
    assert str(url) == "https://10.0.0.5:8443/app/x/y?a=1"
    assert target.unix_socket is None


def test_unix_targets_talk_http_to_localhost_over_the_socket() -> None:
    target = parse_upstream("unix:/run/app/app.sock")
    assert target.unix_socket == "/run/app/app.sock"
    assert str(upstream_url(target, "/", None, "/x", "")) == "http://localhost/x"


@pytest.mark.parametrize(
    ("raw_path", "raw_query"),
    [("/a%2Fb/c%20d", "x=%2F&y=a+b"), ("/caf%C3%A9", "q=%zz&r=%41"), ("/p;v=1/", "")],
)
def test_path_and_query_encoding_are_kept_as_sent(raw_path: str, raw_query: str) -> None:
    url = upstream_url(parse_upstream("http://127.0.0.1:1"), "/", None, raw_path, raw_query)
    assert url is not None
    assert url.raw_path == raw_path
    assert url.raw_query_string == raw_query


@pytest.mark.parametrize(
    ("prefix", "raw_path", "replacement", "expected"),
    [
        ("/wiki/", "/wiki/x", "/", "/x"),
        ("/wiki/", "/wiki/", "/", "/"),
        ("/wiki/", "/wiki/a/b/", "/", "/a/b/"),
        ("/wiki", "/wiki", "/", "/"),
        ("/wiki", "/wiki/x", "/", "/x"),
        ("/wiki/", "//wiki//x", "/", "/x"),  # repeated slashes collapse, as when matching
        ("/wiki/", "/wiki/a%2Fb", "/", "/a%2Fb"),  # encoded slash after the prefix stays encoded
        ("/wiki/", "/wik%69/x", "/", "/x"),  # an encoded prefix still matched the route
        ("/wiki/", "/wiki/x", "/w/", "/w/x"),
        ("/wiki/", "/wiki/", "/w/", "/w/"),
        ("/wiki", "/wiki", "/w", "/w"),
        ("/", "/x/y", "/base/", "/base/x/y"),
        ("/", "/", "/base/", "/base/"),
    ],
)
def test_the_matched_prefix_is_replaced(prefix: str, raw_path: str, replacement: str, expected: str) -> None:
    assert mapped_path(prefix, raw_path, replacement) == expected


def test_an_encoded_slash_inside_the_prefix_cannot_be_mapped() -> None:
    # "/wiki%2Fx" decodes to "/wiki/x" and so matched the route, but its raw form has no "/wiki/" segment.
    assert mapped_path("/wiki/", "/wiki%2Fx", "/") is None


def test_replacement_comes_from_the_route() -> None:
    assert replacement_for(RouteConfig(host="h", upstream="http://u")) is None
    assert replacement_for(RouteConfig(host="h", upstream="http://u", strip_prefix=True)) == "/"
    assert replacement_for(RouteConfig(host="h", upstream="http://u", rewrite="/new base/")) == "/new%20base/"
    assert replacement_for(RouteConfig(host="h", upstream="http://u", rewrite="/a%20b;v=1/")) == "/a%20b;v=1/"


def test_mapping_joins_the_upstream_base_path() -> None:
    url = upstream_url(parse_upstream("http://127.0.0.1:1/app/"), "/wiki/", "/", "/wiki/page", "q=1")
    assert str(url) == "http://127.0.0.1:1/app/page?q=1"

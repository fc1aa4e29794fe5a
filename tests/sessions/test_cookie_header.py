"""The one private import of another library (``aiohttp._cookie_helpers.parse_cookie_header``, behind
``parse_cookie_lines``) fails loudly here if an aiohttp upgrade moves it or changes its reading."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from broker.sessions.cookie_header import parse_cookie_lines

# (Cookie line, every crumb as (name, value, value as sent)): what the broker relies on.
READINGS = [
    ('a=1; b="x;y"; broker=t', [("a", "1", "1"), ("b", "x;y", '"x;y"'), ("broker", "t", "t")]),
    # One bad crumb does not drop the line (``http.cookies.SimpleCookie`` drops all of it).
    ("bad crumb; c=3", [("bad", "", ""), ("crumb", "", ""), ("c", "3", "3")]),
    (
        '{x=1; c="a\\"b"; d=%20; __Host-broker=t2',
        [("{x", "1", "1"), ("c", 'a"b', '"a\\"b"'), ("d", "%20", "%20"), ("__Host-broker", "t2", "t2")],
    ),
    # Every crumb of a repeated name is seen (``request.cookies`` keeps only the last).
    ("n=1; n=2", [("n", "1", "1"), ("n", "2", "2")]),
]


@pytest.mark.parametrize(("line", "crumbs"), READINGS)
def test_the_cookie_parser_reads_every_crumb_as_the_broker_expects(
    line: str, crumbs: list[tuple[str, str, str]]
) -> None:
    assert [(c.name, c.value, c.coded) for c in parse_cookie_lines([line])] == crumbs


@pytest.mark.parametrize(("line", "crumbs"), READINGS)
def test_the_cookie_parser_is_still_the_one_behind_aiohttps_request_cookies(
    line: str, crumbs: list[tuple[str, str, str]]
) -> None:
    """The public reading (``BaseRequest.cookies``, last value of each name) agrees with ours."""
    request = make_mocked_request("GET", "/", headers={"Cookie": line})
    assert dict(request.cookies) == {name: value for name, value, _coded in crumbs}

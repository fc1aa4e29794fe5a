"""The request head the client writes: Host, framing, and nothing that could split the request."""

from __future__ import annotations

import pytest

from broker.errors import UnsendableHeader
from broker.proxy.http1.wire import chunk_size_line, request_head


def test_a_get_carries_host_first_and_only_the_given_headers() -> None:
    head = request_head(
        "GET", "/a%2Fb?q=1", "app:8080", [("Accept", "*/*"), ("X-A", "1")], chunked=False, length=False
    )
    assert head == b"GET /a%2Fb?q=1 HTTP/1.1\r\nHost: app:8080\r\nAccept: */*\r\nX-A: 1\r\n\r\n"


def test_a_preserved_host_is_sent_instead_of_the_upstreams() -> None:
    head = request_head("GET", "/", None, [("Host", "gateway.example")], chunked=False, length=False)
    assert head == b"GET / HTTP/1.1\r\nHost: gateway.example\r\n\r\n"


def test_body_framing() -> None:
    chunked = request_head("POST", "/", "app", [], chunked=True, length=False)
    assert chunked.endswith(b"Transfer-Encoding: chunked\r\n\r\n")
    declared = request_head("PUT", "/", "app", [("Content-Length", "5")], chunked=False, length=True)
    assert declared.count(b"Content-Length") == 1 and b"Transfer-Encoding" not in declared
    # No body: a method that may have content says so with a zero length (as aiohttp did), GET does not.
    assert b"Content-Length: 0\r\n" in request_head("POST", "/", "app", [], chunked=False, length=False)
    assert b"Content-Length" not in request_head("GET", "/", "app", [], chunked=False, length=False)
    assert chunk_size_line(255) == b"ff\r\n"


def test_bytes_a_client_sent_outside_utf8_go_on_unchanged() -> None:
    value = b"caf\xe9".decode("utf-8", "surrogateescape")
    assert b"X-Name: caf\xe9\r\n" in request_head(
        "GET", "/", "app", [("X-Name", value)], chunked=False, length=False
    )


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        ("GET", "/", [("X-User", "a\r\nX-Evil: 1")]),
        ("GET", "/", [("X-User", "a\rb")]),
        ("GET", "/", [("X-User", "a\nb")]),
        ("GET", "/", [("X-User", "a\x00b")]),
        ("GET", "/", [("X User", "a")]),
        ("GET", "/", [("", "a")]),
        ("GET", "/", [("X-User\r\nX-Evil", "a")]),
        ("GET", "/a b", []),
        ("GET", "/a\r\nX: y", []),
        ("GE T", "/", []),
    ],
)
def test_anything_that_could_split_the_request_is_refused(
    method: str, target: str, headers: list[tuple[str, str]]
) -> None:
    with pytest.raises(UnsendableHeader):
        request_head(method, target, "app", headers, chunked=False, length=False)

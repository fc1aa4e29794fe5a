"""Findings of the first abuse run, fixed: each test fails if its defence is removed."""

from __future__ import annotations

import pytest

from broker.proxy.boundary import CLIENT_CLAIMED
from tests.security.conftest import Target


@pytest.mark.parametrize("name", sorted(CLIENT_CLAIMED))
async def test_client_claimed_address_and_url_headers_never_reach_the_upstream(
    target: Target, name: str
) -> None:
    """Finding 2: X-Real-IP, X-Original-URL and relatives are dropped, in any spelling."""
    spelled = name.upper().replace("-", "_")
    request = (
        f"GET /rec/a HTTP/1.1\r\nHost: 127.0.0.1\r\n{name}: 10.0.0.1\r\n{spelled}: /admin\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    answer = await target.raw(request)
    assert answer.startswith(b"HTTP/1.1 200")
    seen = target.recorder.requests[-1]
    assert seen.header(name) == [] and seen.header(spelled) == []
    assert seen.header("X-Forwarded-For") == ["127.0.0.1"]  # what the broker saw, not what was claimed


@pytest.mark.parametrize("line", [b"GET /rec/a\r\n\r\n", b"GET /\r\n\r\n"])
async def test_http_09_request_lines_are_refused(target: Target, line: bytes) -> None:
    """Finding 3: no version means no Host; refused like an HTTP/1.1 request without Host."""
    before = len(target.recorder.requests)
    answer = await target.raw(line)
    assert b" 400 " in answer.split(b"\r\n", 1)[0] or answer.startswith(b"HTTP/0.9 400")
    assert len(target.recorder.requests) == before

"""``proxy/original.py``: which request an ingress describes (pure)."""

from __future__ import annotations

import pytest

from broker.proxy.original import OriginalRequest, original_request


@pytest.mark.parametrize(
    "target", ["/a b", "/a\tb", "/a\x00", "/a\x7f", "/caf\u00e9", "/a\r\nX-Evil: 1", "/\u2028"]
)
def test_a_target_with_anything_but_printable_ascii_is_unusable(target: str) -> None:
    # Whitespace, control characters, DEL and non-ASCII would be read differently by the ingress, the broker
    # and the upstream: such a description is refused (400), never decided on.
    assert original_request({"X-Forwarded-Uri": target}, "GET", "localhost", "", "http") is None


def test_a_printable_target_is_taken_as_described() -> None:
    target = "/a/b;c?x=1&y=%20~!$'()*+,=:@"
    described = original_request(
        {"X-Forwarded-Uri": target, "X-Forwarded-Method": "POST"}, "GET", "localhost", "", "http"
    )
    assert described == OriginalRequest("POST", "http", "localhost", target)

"""Tickets and sealed records: tampering, truncation and swapping all fail closed."""

from __future__ import annotations

import pytest

from broker.sessions.manager import format_ticket, parse_ticket
from broker.sessions.sealing import SealKey


def test_round_trip() -> None:
    key = SealKey.new()
    assert key.open(key.seal(b"payload")) == b"payload"
    parsed = parse_ticket(format_ticket(key))
    assert parsed is not None and parsed.same_as(key)


def test_other_key_cannot_open() -> None:
    a, b = SealKey.new(), SealKey.new()
    assert b.open(a.seal(b"payload")) is None


def test_ciphertext_bound_to_its_id() -> None:
    a = SealKey.new()
    swapped = SealKey(SealKey.new().record_id, a.key)  # same key, other id
    assert swapped.open(a.seal(b"payload")) is None


def test_tampered_ciphertext_fails() -> None:
    key = SealKey.new()
    blob = bytearray(key.seal(b"payload"))
    blob[-1] ^= 1
    assert key.open(bytes(blob)) is None
    assert key.open(b"") is None


@pytest.mark.parametrize(
    "ticket",
    ["", "v1", "v1.", "v2.abc.def", "v1.abc", "v1.a.b.c", "v1.!!!.???", "x" * 500],
)
def test_malformed_tickets_are_refused(ticket: str) -> None:
    assert parse_ticket(ticket) is None


def test_truncated_and_padded_tickets_are_refused() -> None:
    ticket = format_ticket(SealKey.new())
    assert parse_ticket(ticket[:-1]) is None
    assert parse_ticket(ticket + "=") is None
    assert parse_ticket(ticket + "A") is None


def test_repr_does_not_leak_the_key() -> None:
    key = SealKey.new()
    assert str(key).split(".")[1] not in repr(key)


def test_cookie_policy_is_secure_with_host_prefix_on_https() -> None:
    from broker.sessions.cookie import CookiePolicy

    https = CookiePolicy.for_public_url("__Host-broker", "https://gw.example.com")
    assert https.name == "__Host-broker" and https.secure
    local = CookiePolicy.for_public_url("__Host-broker", "http://localhost:8080")
    assert local.name == "broker" and not local.secure


def test_cookie_reading_is_memoised_per_header_value_without_mixing_them_up() -> None:
    """The memo (one per policy, so one per gateway) is keyed by the whole Cookie header lines."""
    from aiohttp.test_utils import make_mocked_request

    from broker.sessions.cookie import CookiePolicy
    from broker.sessions.cookie_header import MEMO_SIZE

    policy = CookiePolicy.for_public_url("__Host-broker", "https://gw.example.com")
    other = CookiePolicy.for_public_url("__Host-other", "https://gw.example.com")

    def read(p: CookiePolicy, header: str | None) -> str | None:
        headers = {"Cookie": header} if header is not None else {}
        return p.read(make_mocked_request("GET", "/", headers=headers))

    for _ in range(2):  # a miss, then a hit: same answers
        assert read(policy, "__Host-broker=v1.a.b; theme=dark") == "v1.a.b"
        assert read(policy, "theme=dark; __Host-broker=v1.c.d") == "v1.c.d"
        assert read(other, "__Host-broker=v1.a.b; theme=dark") is None
        assert read(policy, "theme=dark") is None
        assert read(policy, None) is None
    for n in range(MEMO_SIZE + 10):
        read(policy, f"__Host-broker=v1.{n}.x")
    assert len(policy.memo) <= MEMO_SIZE
    assert len(other.memo) == 1  # its own memo: nothing of the other policy's
    assert read(policy, "__Host-broker=v1.a.b; theme=dark") == "v1.a.b"

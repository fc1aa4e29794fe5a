"""Tickets and sealed records: tampering, truncation and swapping all fail closed."""

from __future__ import annotations

import pytest

from broker.sessions.sealing import SealKey, ServerKeys, read_header
from broker.sessions.ticket import format_ticket, parse_ticket

SERVER = ServerKeys.random()


def test_round_trip() -> None:
    key = SealKey.new(SERVER)
    assert key.open(key.seal(b"payload")) == b"payload"
    parsed = parse_ticket(format_ticket(key))
    assert parsed is not None and parsed.same_as(key)


def test_other_key_cannot_open() -> None:
    a, b = SealKey.new(SERVER), SealKey.new(SERVER)
    assert b.open(a.seal(b"payload")) is None


def test_ciphertext_bound_to_its_id() -> None:
    a = SealKey.new(SERVER)
    swapped = SealKey(SealKey.new().record_id, a.key, SERVER)  # same key, other id
    assert swapped.open(a.seal(b"payload")) is None


def test_tampered_ciphertext_fails() -> None:
    key = SealKey.new(SERVER)
    blob = bytearray(key.seal(b"payload"))
    blob[-1] ^= 1
    assert key.open(bytes(blob)) is None
    assert key.open(b"") is None


def test_the_ticket_alone_cannot_seal_or_open_without_the_server_key() -> None:
    """A ticket under another server key (a Redis writer with its own ticket) opens nothing."""
    key = SealKey.new(SERVER)
    other_server = key.with_server(ServerKeys.random())
    assert other_server.open(key.seal(b"payload")) is None
    assert key.open(other_server.seal(b"payload")) is None


def test_header_generation_is_authenticated() -> None:
    key = SealKey.new(SERVER)
    blob = bytearray(key.seal(b"payload", generation=3))
    assert read_header(bytes(blob)) is not None and read_header(bytes(blob)).generation == 3  # type: ignore[union-attr]
    blob[12] ^= 1  # the generation's last byte: 3 -> 2
    assert key.open(bytes(blob)) is None


def test_rotation_first_key_seals_every_key_opens() -> None:
    a, b = ServerKeys.random(), ServerKeys.random()
    key = SealKey.new(a)
    old = key.seal(b"payload")
    rotated = key.with_server(ServerKeys([b.keys[0], a.keys[0]]))
    assert rotated.open(old) == b"payload"
    new = rotated.seal(b"payload")
    assert key.with_server(b).open(new) == b"payload" and key.open(new) is None
    assert key.with_server(b).open(old) is None  # A dropped: its records no longer open


def test_server_keys_shorter_than_32_bytes_are_refused() -> None:
    with pytest.raises(ValueError):
        ServerKeys([b"x" * 31])


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

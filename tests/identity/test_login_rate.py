"""The login-start rate limit as a pure decision: buckets, refill, memory bound, which address counts."""

from __future__ import annotations

from broker.identity.login_rate import LoginRateLimiter, client_key
from broker.proxy.forwarded import parse_networks

PROXIES = parse_networks(["10.0.0.0/8"])


def test_burst_then_rate_then_refill() -> None:
    limiter = LoginRateLimiter(per_second=2, burst=3)
    assert [limiter.retry_after("a", 100.0) for _ in range(3)] == [0, 0, 0]
    assert limiter.retry_after("a", 100.0) == 1
    assert limiter.retry_after("b", 100.0) == 0  # another client is not affected
    assert limiter.retry_after("a", 100.5) == 0  # half a second: one token back
    assert limiter.retry_after("a", 100.5) == 1


def test_memory_stays_bounded_and_refilled_clients_are_forgotten() -> None:
    limiter = LoginRateLimiter(per_second=1, burst=2, max_clients=100)
    for i in range(1000):
        limiter.retry_after(f"c{i}", 100.0)
    assert len(limiter) == 100
    limiter.retry_after("late", 103.0)  # everyone else refilled 2 s after their start
    assert len(limiter) == 1


def test_client_address_follows_the_trusted_proxy_rules() -> None:
    assert client_key("192.0.2.1", ["203.0.113.9"], PROXIES) == "192.0.2.1"  # untrusted: its claim ignored
    assert client_key("10.0.0.2", ["203.0.113.9, 10.0.0.7"], PROXIES) == "203.0.113.9"
    assert client_key("10.0.0.2", ["1.1.1.1, 203.0.113.9"], PROXIES) == "203.0.113.9"  # left of it: a claim
    assert client_key("10.0.0.2", ["junk"], PROXIES) == "10.0.0.2"
    assert client_key("10.0.0.2", [], PROXIES) == "10.0.0.2"
    assert client_key("2001:db8::1", [], PROXIES) == client_key("2001:db8::ffff", [], PROXIES)
    assert client_key(None, [], PROXIES) == "unknown"

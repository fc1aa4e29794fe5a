"""How fast one client may start sign-ins: a token bucket per client address, per process, bounded in memory.

Every ``/.auth/login/{code}/start`` stores login state (about 1 KB for 10 minutes), and anyone may call it,
so starts are limited per client. The client is the TCP peer, or, when the peer is one of
``server.trusted_proxies``, the nearest address in ``X-Forwarded-For`` that is not itself a trusted proxy
(the hops to its right were written by our own proxies; anything further left is the client's claim).
IPv6 clients are counted per /64, the block one subscriber usually holds, so cycling addresses within it
does not help. Bucket state lives in an insertion-ordered dict: entries whose bucket has refilled are dropped
from the front, and past ``max_clients`` the least recently seen go (they restart with a full bucket).
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Sequence

from broker.proxy.forwarded import IPNetwork, client_address

DEFAULT_MAX_CLIENTS = 100_000
UNKNOWN_CLIENT = "unknown"


def client_key(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]) -> str:
    """The address a rate limit applies to, as the trusted-proxy rules establish it."""
    address = client_address(peer, forwarded_for, trusted)
    if address is None:
        return UNKNOWN_CLIENT
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class LoginRateLimiter:
    """``per_second`` sign-in starts per client, with bursts up to ``burst``."""

    def __init__(self, per_second: float, burst: int, max_clients: int = DEFAULT_MAX_CLIENTS) -> None:
        self.per_second = per_second
        self.burst = float(burst)
        self.max_clients = max_clients
        self._refill_time = self.burst / per_second
        # client -> (tokens left, when counted); ordered by last use, oldest first
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def retry_after(self, client: str, now: float) -> int:
        """0 when ``client`` may start a sign-in now (spending a token), else whole seconds to wait."""
        self._forget_refilled(now)
        tokens, counted = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - counted) * self.per_second)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return 0 if allowed else max(1, math.ceil((1.0 - tokens) / self.per_second))

    def _forget_refilled(self, now: float) -> None:
        """Drop clients whose bucket is full again: forgetting them changes nothing."""
        while self._buckets:
            counted = next(iter(self._buckets.values()))[1]
            if now - counted < self._refill_time:
                return
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)

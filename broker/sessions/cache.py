"""An in-process cache of decrypted sessions, so a busy session costs no store round trip, no AES-GCM and
no JSON on most requests.

Correctness rests on invalidation, not on the TTL: every change that matters to other processes (logout,
revocation, a refresh that changed tokens or roles) is published on the store's invalidation channel, and
every process drops its copy when the message arrives, milliseconds later. The TTL only bounds how long a
copy lives if a message were ever missed.

Fail closed: the cache serves only while its process is subscribed to that channel (``live``). When the
subscription drops (Redis down, failover), everything cached is forgotten and every request reads the
store again until the subscription is back; a (re)subscription starts from an empty cache, because
messages sent while it was away are lost.

Entries are found by storage id (the hash of the session id) and handed out only to a ticket with the
same key, compared in constant time: a ticket with a right id and a wrong key misses and goes to the store,
where its key fails to decrypt the record, as without the cache.

Last-seen times are not kept current here: a copy whose session is due for a touch, or looks idle or too
old, is not served (the caller reads the store, which has the truth).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from broker.sessions.model import Session
from broker.sessions.sealing import SealKey

log = logging.getLogger(__name__)

DEFAULT_MAX_ENTRIES = 100_000
SWEEP_EVERY = 1024  # expired copies (sessions gone quiet) are dropped every this many insertions
SWEEP_INTERVAL = 30.0  # ... and at least this often (seconds)
INVALIDATION_CHANNEL = "session-invalidations"


@dataclass
class _Entry:
    key: SealKey
    session: Session
    expires_at: float


class SessionCache:
    """Decrypted sessions by storage id, valid while invalidations are heard."""

    def __init__(
        self,
        ttl_seconds: float,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._added = 0
        self._next_sweep = 0.0
        self._live = False
        # Bumped by every invalidation: a store read that started before one may not be cached after it
        # (it may have read what was just revoked).
        self.epoch = 0

    @property
    def live(self) -> bool:
        """Whether the cache may serve: its process is subscribed to invalidations."""
        return self._live

    def __len__(self) -> int:
        return len(self._entries)

    def set_live(self, live: bool) -> None:
        """Subscription state changed: start over empty either way (messages may have been missed)."""
        if live != self._live:
            log.info("session cache %s", "on" if live else "off (not hearing invalidations)")
        self._live = live
        self._entries.clear()
        self.epoch += 1

    def get(self, key: SealKey) -> Session | None:
        """The cached session for this exact ticket key, or None."""
        if not self._live:
            return None
        entry = self._entries.get(key.storage_id())
        if entry is None or not entry.key.same_as(key):
            return None
        if entry.expires_at <= self._clock():
            del self._entries[key.storage_id()]
            return None
        return entry.session

    def put(self, key: SealKey, session: Session, epoch: int) -> None:
        """Remember a session read (or written) when ``epoch`` was current; ignored if an invalidation
        arrived since, or while not live."""
        if not self._live or epoch != self.epoch or self._ttl <= 0:
            return
        self._added += 1
        now = self._clock()
        full = len(self._entries) >= self._max_entries
        if full or self._added % SWEEP_EVERY == 0 or now >= self._next_sweep:
            self._evict()
            self._next_sweep = now + SWEEP_INTERVAL
        self._entries[key.storage_id()] = _Entry(key, session, now + self._ttl)

    def invalidate(self, storage_id: str) -> None:
        """Forget one session (a message from the channel, or this process's own change)."""
        self.epoch += 1
        self._entries.pop(storage_id, None)

    def _evict(self) -> None:
        """Drop expired entries; if still full, the oldest half (insertion order)."""
        now = self._clock()
        for storage_id in [s for s, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[storage_id]
        if len(self._entries) >= self._max_entries:
            for storage_id in list(self._entries)[: len(self._entries) // 2]:
                del self._entries[storage_id]

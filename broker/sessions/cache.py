"""An in-process cache of decrypted sessions, so a busy session costs no store round trip, no AES-GCM and
no JSON on most requests.

Correctness rests on invalidation, not on the TTL: every change that matters to other processes (logout,
revocation, a refresh that changed tokens or roles) is published on the store's invalidation channel, and
every process drops its copy when the message arrives, milliseconds later. The TTL only bounds how long a
copy lives if a message were ever missed.

Fail closed: the cache serves only while its process is subscribed to that channel (``set_live``). When the
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

from broker.ops.caches import SweepSchedule, sweep
from broker.sessions.model import Session
from broker.sessions.sealing import SealKey

log = logging.getLogger(__name__)

DEFAULT_MAX_ENTRIES = 100_000
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
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._sweeps = SweepSchedule(max_entries)
        self._live = False
        # Bumped by every invalidation: a store read that started before one may not be cached after it
        # (it may have read what was just revoked).
        self.epoch = 0

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
        now = self._clock()
        if self._sweeps.due(len(self._entries), now):
            sweep(self._entries, lambda entry: entry.expires_at, now, self._sweeps.max_entries)
        self._entries[key.storage_id()] = _Entry(key, session, now + self._ttl)

    def invalidate(self, storage_id: str) -> None:
        """Forget one session (a message from the channel, or this process's own change)."""
        self.epoch += 1
        self._entries.pop(storage_id, None)

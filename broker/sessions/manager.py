"""Sessions and login state on top of a ``SessionStore``: tickets in, sealed records out.

The cookie holds a ticket ``v1.{id}.{key}``; the store holds AES-GCM ciphertext under a hash of the id,
sealed with a key derived from the ticket's key *and* a server key (see ``sealing.py``). Login state uses
the same sealing (``pending_logins.py``).

Every change to a stored session after its creation is a compare-and-set against the exact record that
was read (its unique sealed header): a refresh, the last-seen touch and the retry bookkeeping never
overwrite a change made meanwhile. A revocation replaces the record with a tombstone, so whatever write is
in flight fails and a revoked session stays revoked. Nothing acts on a session (touch, refresh, logout)
without first opening its record with the ticket's key, except revocation by storage id (operators,
front-channel logout, expiry), which only ever ends a session.

Indexes let the broker find sessions without being able to read them: by Entra session (``tid``+``sid``,
for front-channel logout), by user (``tid``+``oid``, "sign out everywhere") and by company (the CLI).
Index names are HMAC-SHA256 under the server keys (a Redis reader cannot compute or confirm a user's); they
and each session's meta record (``m:{id}``: company, times, index names) hold only non-identifying data.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from dataclasses import dataclass, replace
from functools import lru_cache

from broker.errors import SessionStoreUnavailable
from broker.sessions.cache import INVALIDATION_CHANNEL, SessionCache
from broker.sessions.generations import GenerationFloor
from broker.sessions.model import Session
from broker.sessions.sealing import TOMBSTONE, SealKey, ServerKeys, read_header
from broker.sessions.store import SessionStore
from broker.sessions.store_health import BOOKKEEPING_BACKOFF, StoreHealth
from broker.sessions.ticket import format_ticket, parse_ticket

log = logging.getLogger(__name__)

SESSION_PREFIX = "s:"
INDEX_PREFIX = "ix:"
META_PREFIX = "m:"
# Writing last_seen on every request would cost a store write per request; once a minute is enough
# for an idle timeout measured in hours.
TOUCH_INTERVAL = 60.0
FIRST_GENERATION = 1
TICKET_MEMO = 4096


@dataclass(frozen=True)
class IndexRef:
    """Which index (a user, an Entra sign-in, a company); its stored names are keyed by the server keys."""

    kind: str
    parts: tuple[str, ...]


def user_index(tid: str, oid: str) -> IndexRef:
    """Index of a user's sessions (``tid:oid``)."""
    return IndexRef("user", (tid, oid))


def sid_index(tid: str, sid: str) -> IndexRef:
    """Index of the broker sessions created from one Entra sign-in session."""
    return IndexRef("sid", (tid, sid))


def company_index(login_code: str) -> IndexRef:
    """Index of a company's sessions."""
    return IndexRef("company", (login_code,))


@dataclass(frozen=True)
class SessionInfo:
    """What an operator may see about a session without reading it."""

    session_id: str
    login_code: str
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class StoredSession:
    """A session as read, with the stored version it came from (what a compare-and-set compares)."""

    session: Session
    header: bytes
    generation: int


class SessionManager:
    """Creates, loads, changes and revokes sessions; enforces idle timeout and absolute lifetime.

    With a ``SessionCache``, ``load`` serves a recently read session from memory. Every change other
    processes must see at once (a refresh, a revocation) is published on the store's invalidation channel,
    with or without a cache here: the sessions CLI revokes through this class too.
    """

    def __init__(
        self,
        store: SessionStore,
        idle_timeout: float,
        lifetime: float,
        cache: SessionCache | None = None,
        *,
        keys: ServerKeys,
        floor: GenerationFloor | None = None,
        health: StoreHealth | None = None,
    ) -> None:
        self.store = store
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime
        self.cache = cache
        self.keys = keys
        self.floor = floor if floor is not None else GenerationFloor()
        # Shared with the store: a failed write (Redis full) pauses the bookkeeping writes for a while.
        self.health = health if health is not None else StoreHealth(time.monotonic)
        # Memoised per manager, not per process: a busy browser sends the same ticket on every request, and
        # the key, parsed and bound to this manager's server keys, keeps its storage id (a SHA-256)
        # computed: neither is redone per request. The result depends on the text (and these fixed keys)
        # alone; junk only evicts entries (bounded).
        self._bind = lru_cache(maxsize=TICKET_MEMO)(self._bind_uncached)

    def _ttl(self, session: Session, now: float) -> float:
        """Store TTL: whichever comes first, idle expiry or the absolute end of the session."""
        return min(self.idle_timeout, session.created_at + self.lifetime - now)

    def index_names(self, index: IndexRef) -> list[str]:
        """The stored names of an index, one per server key (the sealing key's first)."""
        return [
            f"{INDEX_PREFIX}{index.kind}:{name}" for name in self.keys.index_names(index.kind, index.parts)
        ]

    def _indexes(self, session: Session) -> list[str]:
        refs = [user_index(session.tid, session.oid), company_index(session.login_code)]
        if session.sid:
            refs.append(sid_index(session.tid, session.sid))
        return [self.index_names(ref)[0] for ref in refs]

    async def create(self, session: Session, now: float) -> str:
        """Store a new session under a fresh id (never a client-chosen one) and return its ticket."""
        key = SealKey.new(self.keys)
        session = replace(session, created_at=now, last_seen=now, refreshed_at=now)
        # A new id: no process can have a copy to drop, and no record to compare with.
        blob = key.seal(pack_session(session), FIRST_GENERATION)
        indexes = self._indexes(session)
        meta = json.dumps(
            {
                "login_code": session.login_code,
                "created_at": now,
                "expires_at": now + self.lifetime,
                "indexes": indexes,
            }
        ).encode()
        session_id = key.storage_id()
        # One round trip for the record, the meta record and the indexes. The members' values stay empty:
        # the meta record holds what listing shows (one copy, not one per index: a few hundred bytes less
        # per session in Redis).
        records = [
            (SESSION_PREFIX + session_id, blob, self._ttl(session, now)),
            (META_PREFIX + session_id, meta, self.lifetime),
        ]
        await self.store.put_indexed(records, indexes, session_id, self.lifetime)
        return format_ticket(key)

    async def replace(
        self, key: SealKey, read: StoredSession, session: Session, now: float, *, announce: bool = True
    ) -> bool:
        """Write ``session`` as the next generation, only if the stored record is still ``read``.

        False means someone else changed (or revoked) it meanwhile: the caller re-reads, never overwrites.
        This is also what fences the refresh lock: a holder that stalled past its lease finds the record
        changed and cannot write.
        """
        generation = read.generation + 1
        blob = key.seal(pack_session(session), generation)
        storage_id = key.storage_id()
        if not await self.store.replace_if(
            SESSION_PREFIX + storage_id, read.header, blob, self._ttl(session, now)
        ):
            return False
        self.floor.saw(storage_id, generation, self.lifetime)
        if announce:
            await self._announce(storage_id)
            if self.cache is not None:
                self.cache.put(key, session, self.cache.epoch)
        return True

    async def _announce(self, storage_id: str) -> None:
        """Drop every process's cached copy (this one's first, without waiting for the echo)."""
        if self.cache is not None:
            self.cache.invalidate(storage_id)
        await self.store.publish(INVALIDATION_CHANNEL, storage_id)

    def _servable(self, session: Session, now: float) -> bool:
        """A cached copy may answer: not idle, not too old, not due for a touch (those need the store)."""
        idle = now - session.last_seen
        return idle <= min(TOUCH_INTERVAL, self.idle_timeout) and now - session.created_at <= self.lifetime

    def bind(self, ticket: str) -> SealKey | None:
        """The ticket's key, able to open records with this gateway's server keys (memoised)."""
        return self._bind(ticket)

    def _bind_uncached(self, ticket: str) -> SealKey | None:
        key = parse_ticket(ticket)
        return key.with_server(self.keys) if key is not None else None

    async def load(self, ticket: str, now: float) -> tuple[SealKey, Session] | None:
        """The live session a ticket points to, or None (malformed, unknown, tampered or expired)."""
        key = self.bind(ticket)
        if key is None:
            return None
        cache = self.cache
        if cache is not None:
            cached = cache.get(key)
            if cached is not None and self._servable(cached, now):
                return key, cached
            epoch = cache.epoch
        stored = await self.read(key)
        if stored is None:
            return None
        session = stored.session
        if now - session.last_seen > self.idle_timeout or now - session.created_at > self.lifetime:
            try:
                await self.revoke(key.storage_id())
            except SessionStoreUnavailable as exc:  # refused either way; the record's TTL ends it too
                log.warning(
                    "could not revoke an expired session: %s", exc, extra={"event": "bookkeeping_failed"}
                )
            return None
        if now - session.last_seen > TOUCH_INTERVAL:
            touched = await self._touch(key, stored, now)
            if touched is None:
                return None
            session = touched
        if cache is not None:
            cache.put(key, session, epoch)
        return key, session

    async def _touch(self, key: SealKey, stored: StoredSession, now: float) -> Session | None:
        """Record last_seen (compare-and-set); a session read and verified is served even if this fails.

        After a failed store write (Redis full, say) the write is not even tried for ``BOOKKEEPING_BACKOFF``
        seconds: a full Redis would otherwise get a doomed write (and the log a line) on every request.
        """
        if self.health.backing_off():
            return stored.session
        touched = replace(stored.session, last_seen=now)
        try:
            # Only last_seen changes: other processes' copies stay valid (they come here when due too).
            if await self.replace(key, stored, touched, now, announce=False):
                return touched
        except SessionStoreUnavailable as exc:
            # Bookkeeping only (Redis full, say): never refuse the request for it. The store counted the
            # failure (broker_session_store_errors_total) and the back-off makes this line one per interval
            # (noted here too, so the back-off holds whichever store raised).
            self.health.write_refused()
            log.warning(
                "could not record last-seen (retried in %.0f s): %s",
                BOOKKEEPING_BACKOFF,
                exc,
                extra={"event": "bookkeeping_failed"},
            )
            return stored.session
        # Changed meanwhile (a refresh, a revocation, another replica's touch): use what is there now.
        again = await self.read(key)
        return again.session if again is not None else None

    async def read(self, key: SealKey) -> StoredSession | None:
        """Decrypt a session without touching it (None when gone, revoked, not decryptable with this key
        and the server keys, or older than a generation this process has already seen)."""
        storage_id = key.storage_id()
        floor = self.floor.minimum(storage_id)  # before the read: see GenerationFloor.minimum
        blob = await self.store.get(SESSION_PREFIX + storage_id)
        if blob is None:
            return None
        if blob == TOMBSTONE:
            self.floor.revoked(storage_id, self.lifetime)
            return None
        sealed = read_header(blob)
        plain = key.open(blob) if sealed is not None else None
        session = unpack_session(plain) if plain is not None else None
        if sealed is None or session is None:
            log.warning("session ticket did not decrypt its record", extra={"event": "session_tampered"})
            return None
        if sealed.generation < floor:
            log.warning("an older record of a session was put back", extra={"event": "session_rollback"})
            return None
        self.floor.saw(storage_id, sealed.generation, self.lifetime)
        return StoredSession(session, sealed.header, sealed.generation)

    async def delete(self, ticket: str) -> None:
        """End the session a ticket points to (logout, a new login in the same browser).

        Only a ticket that opens its record may end it: a cookie naming someone else's session id with a
        made-up key must not sign that person out.
        """
        key = self.bind(ticket)
        if key is not None and await self.read(key) is not None:
            await self.revoke(key.storage_id())

    async def revoke(self, session_id: str) -> bool:
        """End a session by its storage id: a tombstone replaces its record (so no write in flight can
        bring it back) and it leaves its indexes; False when it did not exist."""
        meta = await self.store.take(META_PREFIX + session_id)
        current = await self.store.get(SESSION_PREFIX + session_id)
        existed = current is not None and current != TOMBSTONE
        if current is not None:
            # Kept for a whole lifetime (at least what is left of the session's): a few bytes per revocation.
            await self.store.put(SESSION_PREFIX + session_id, TOMBSTONE, self.lifetime)
        self.floor.revoked(session_id, self.lifetime)
        await self._announce(session_id)
        indexes = _meta(meta).get("indexes") if meta else None
        for index in indexes if isinstance(indexes, list) else []:
            await self.store.index_remove(str(index), session_id)
        return existed

    async def revoke_index(self, index: IndexRef) -> int:
        """Revoke every session listed in an index (a user, an Entra session, a company); returns how many."""
        revoked = 0
        for name in self.index_names(index):
            for session_id in await self.store.index_get(name):
                revoked += await self.revoke(session_id)
                await self.store.index_remove(name, session_id)
        return revoked

    async def index_size(self, index: IndexRef) -> int:
        """How many sessions an index lists (under every server key's name)."""
        return sum([await self.store.index_size(name) for name in self.index_names(index)])

    async def list_index(self, index: IndexRef) -> list[SessionInfo]:
        """Live sessions in an index (entries whose session has ended are dropped on the way)."""
        infos = []
        for name in self.index_names(index):
            for session_id in sorted(await self.store.index_get(name)):
                meta = await self.store.get(META_PREFIX + session_id)
                record = await self.store.get(SESSION_PREFIX + session_id)
                if meta is None or record is None or record == TOMBSTONE:
                    await self.store.index_remove(name, session_id)
                    continue
                data = _meta(meta)
                infos.append(
                    SessionInfo(
                        session_id,
                        str(data.get("login_code", "")),
                        _number(data.get("created_at")),
                        _number(data.get("expires_at")),
                    )
                )
        return infos


# Sealed session records: a format byte, then zlib-compressed JSON. Entra's tokens are base64 text, which
# compresses by about a quarter, keeping a session with Entra-sized tokens under 4 KB in Redis.
# (Compressing before encrypting leaks length only to whoever sees the ciphertext: the store, never a client.)
_PACKED = b"\x01"


def pack_session(session: Session) -> bytes:
    """The plaintext that gets sealed: format byte + compressed JSON."""
    return _PACKED + zlib.compress(session.to_json(), 6)


def unpack_session(plain: bytes) -> Session | None:
    """A session from decrypted bytes (compressed, or plain JSON as written before compression)."""
    if plain.startswith(_PACKED):
        try:
            plain = zlib.decompress(plain[1:])
        except zlib.error:
            return None
    return Session.from_json(plain)


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _meta(raw: bytes) -> dict[str, object]:
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}

"""Sessions and login state on top of a ``SessionStore``: tickets in, sealed records out.

The cookie holds a ticket ``v1.{id}.{key}``; the store holds AES-GCM ciphertext under a hash of the id
(see ``sealing.py``). Login state uses the same sealing (``pending_logins.py``).

Indexes let the broker find sessions without being able to read them: by Entra session (``tid``+``sid``,
for front-channel logout), by user (``tid``+``oid``, "sign out everywhere") and by company (the CLI).
Index names are SHA-256 hashes; they and each session's meta record (``m:{id}``: company, times, index
names) hold only non-identifying data, so a Redis dump still reveals no token and no claim.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zlib
from dataclasses import dataclass, replace
from functools import lru_cache

from broker.sessions.cache import INVALIDATION_CHANNEL, SessionCache
from broker.sessions.model import Session
from broker.sessions.sealing import SealKey
from broker.sessions.store import SessionStore

log = logging.getLogger(__name__)

TICKET_VERSION = "v1"
SESSION_PREFIX = "s:"
INDEX_PREFIX = "ix:"
META_PREFIX = "m:"
# Writing last_seen on every request would cost a store write per request; once a minute is enough
# for an idle timeout measured in hours.
TOUCH_INTERVAL = 60.0


def format_ticket(key: SealKey) -> str:
    """``v1.{id}.{key}``: versioned so the format can change without breaking existing cookies."""
    return f"{TICKET_VERSION}.{key}"


@lru_cache(maxsize=4096)
def parse_ticket(text: str) -> SealKey | None:
    """The seal key in a cookie value; None for anything that is not a well-formed v1 ticket.

    Memoised: a busy browser sends the same ticket on every request, and the parsed key keeps its storage
    id (a SHA-256) computed. The result depends on the text alone; junk only evicts entries (bounded).
    """
    version, _, rest = text.partition(".")
    if version != TICKET_VERSION or len(text) > 200:
        return None
    return SealKey.parse(rest)


def _hashed(kind: str, *parts: str) -> str:
    return (
        INDEX_PREFIX + kind + ":" + hashlib.sha256("\x1f".join(p.lower() for p in parts).encode()).hexdigest()
    )


def user_index(tid: str, oid: str) -> str:
    """Index of a user's sessions (``tid:oid``)."""
    return _hashed("user", tid, oid)


def sid_index(tid: str, sid: str) -> str:
    """Index of the broker sessions created from one Entra sign-in session."""
    return _hashed("sid", tid, sid)


def company_index(login_code: str) -> str:
    """Index of a company's sessions."""
    return _hashed("company", login_code)


@dataclass(frozen=True)
class SessionInfo:
    """What an operator may see about a session without reading it."""

    session_id: str
    login_code: str
    created_at: float
    expires_at: float


class SessionManager:
    """Creates, loads, saves, touches and revokes sessions; enforces idle timeout and absolute lifetime.

    With a ``SessionCache``, ``load`` serves a recently read session from memory. Every change other
    processes must see at once (a save after refresh, a revocation) is published on the store's
    invalidation channel, with or without a cache here: the sessions CLI revokes through this class too.
    """

    def __init__(
        self, store: SessionStore, idle_timeout: float, lifetime: float, cache: SessionCache | None = None
    ) -> None:
        self.store = store
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime
        self.cache = cache

    def _ttl(self, session: Session, now: float) -> float:
        """Store TTL: whichever comes first, idle expiry or the absolute end of the session."""
        return min(self.idle_timeout, session.created_at + self.lifetime - now)

    def _indexes(self, session: Session) -> list[str]:
        names = [user_index(session.tid, session.oid), company_index(session.login_code)]
        if session.sid:
            names.append(sid_index(session.tid, session.sid))
        return names

    async def create(self, session: Session, now: float) -> str:
        """Store a new session under a fresh id (never a client-chosen one) and return its ticket."""
        key = SealKey.new()
        session = replace(session, created_at=now, last_seen=now, refreshed_at=now)
        await self._write(key, session, now)  # a new id: no process can have a copy to drop
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
        await self.store.put(META_PREFIX + session_id, meta, self.lifetime)
        for index in indexes:
            # The member's value stays empty: the meta record holds what listing shows (one copy, not
            # one per index: a few hundred bytes less per session in Redis).
            await self.store.index_add(index, session_id, b"", self.lifetime)
        return format_ticket(key)

    async def save(self, key: SealKey, session: Session, now: float) -> None:
        """(Re)write a session under its existing id after a change (a refresh), and tell every process."""
        await self._write(key, session, now)
        await self._announce(key.storage_id())
        if self.cache is not None:
            self.cache.put(key, session, self.cache.epoch)

    async def _write(self, key: SealKey, session: Session, now: float) -> None:
        await self.store.put(
            SESSION_PREFIX + key.storage_id(), key.seal(pack_session(session)), self._ttl(session, now)
        )

    async def _announce(self, storage_id: str) -> None:
        """Drop every process's cached copy (this one's first, without waiting for the echo)."""
        if self.cache is not None:
            self.cache.invalidate(storage_id)
        await self.store.publish(INVALIDATION_CHANNEL, storage_id)

    def _servable(self, session: Session, now: float) -> bool:
        """A cached copy may answer: not idle, not too old, not due for a touch (those need the store)."""
        idle = now - session.last_seen
        return idle <= min(TOUCH_INTERVAL, self.idle_timeout) and now - session.created_at <= self.lifetime

    async def load(self, ticket: str, now: float) -> tuple[SealKey, Session] | None:
        """The live session a ticket points to, or None (malformed, unknown, tampered or expired)."""
        key = parse_ticket(ticket)
        if key is None:
            return None
        cache = self.cache
        if cache is not None:
            cached = cache.get(key)
            if cached is not None and self._servable(cached, now):
                return key, cached
            epoch = cache.epoch
        session = await self.read(key)
        if session is None:
            return None
        if now - session.last_seen > self.idle_timeout or now - session.created_at > self.lifetime:
            await self.revoke(key.storage_id())
            return None
        if now - session.last_seen > TOUCH_INTERVAL:
            # Only last_seen changes: other processes' copies stay valid (they come here when due too).
            session.last_seen = now
            await self._write(key, session, now)
        if cache is not None:
            cache.put(key, session, epoch)
        return key, session

    async def read(self, key: SealKey) -> Session | None:
        """Decrypt a session without touching it (None when gone or not decryptable with this key)."""
        blob = await self.store.get(SESSION_PREFIX + key.storage_id())
        if blob is None:
            return None
        plain = key.open(blob)
        session = unpack_session(plain) if plain is not None else None
        if session is None:
            log.warning("session ticket did not decrypt its record", extra={"event": "session_tampered"})
        return session

    async def delete(self, ticket: str) -> None:
        """Remove the session a ticket points to (logout); unknown tickets are ignored."""
        key = parse_ticket(ticket)
        if key is not None:
            await self.revoke(key.storage_id())

    async def revoke(self, session_id: str) -> bool:
        """Delete a session by its storage id and drop it from its indexes; False when it did not exist."""
        meta = await self.store.take(META_PREFIX + session_id)
        existed = await self.store.get(SESSION_PREFIX + session_id) is not None
        await self.store.delete(SESSION_PREFIX + session_id)
        await self._announce(session_id)
        indexes = _meta(meta).get("indexes") if meta else None
        for index in indexes if isinstance(indexes, list) else []:
            await self.store.index_remove(str(index), session_id)
        return existed

    async def revoke_index(self, index: str) -> int:
        """Revoke every session listed in an index (a user, an Entra session, a company); returns how many."""
        revoked = 0
        for session_id in await self.store.index_get(index):
            revoked += await self.revoke(session_id)
            await self.store.index_remove(index, session_id)
        return revoked

    async def list_index(self, index: str) -> list[SessionInfo]:
        """Live sessions in an index (entries whose session has expired are dropped on the way)."""
        infos = []
        for session_id in sorted(await self.store.index_get(index)):
            meta = await self.store.get(META_PREFIX + session_id)
            if meta is None or await self.store.get(SESSION_PREFIX + session_id) is None:
                await self.store.index_remove(index, session_id)
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


def _compact(data: dict[str, object]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _meta(raw: bytes) -> dict[str, object]:
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}

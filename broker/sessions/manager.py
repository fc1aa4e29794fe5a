"""Sessions and login state on top of a ``SessionStore``: tickets in, sealed records out.

The cookie holds a ticket ``v1.{id}.{key}``; the store holds AES-GCM ciphertext under a hash of the id
(see ``sealing.py``). Login state uses the same sealing, with ``{id}.{key}`` as the OAuth ``state``.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from broker.sessions.model import LoginState, Session
from broker.sessions.sealing import SealKey
from broker.sessions.store import SessionStore

log = logging.getLogger(__name__)

TICKET_VERSION = "v1"
SESSION_PREFIX = "s:"
STATE_PREFIX = "st:"
LOGIN_STATE_TTL = 600.0
# Writing last_seen on every request would cost a store write per request; once a minute is enough
# for an idle timeout measured in hours.
TOUCH_INTERVAL = 60.0


def format_ticket(key: SealKey) -> str:
    """``v1.{id}.{key}``: versioned so the format can change without breaking existing cookies."""
    return f"{TICKET_VERSION}.{key}"


def parse_ticket(text: str) -> SealKey | None:
    """The seal key in a cookie value; None for anything that is not a well-formed v1 ticket."""
    version, _, rest = text.partition(".")
    if version != TICKET_VERSION or len(text) > 200:
        return None
    return SealKey.parse(rest)


class SessionManager:
    """Creates, loads, touches and deletes sessions; enforces idle timeout and absolute lifetime."""

    def __init__(self, store: SessionStore, idle_timeout: float, lifetime: float) -> None:
        self.store = store
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime

    def _ttl(self, session: Session, now: float) -> float:
        """Store TTL: whichever comes first, idle expiry or the absolute end of the session."""
        return min(self.idle_timeout, session.created_at + self.lifetime - now)

    async def create(self, session: Session, now: float) -> str:
        """Store a new session under a fresh id (never a client-chosen one) and return its ticket."""
        key = SealKey.new()
        session = replace(session, created_at=now, last_seen=now)
        await self.store.put(
            SESSION_PREFIX + key.storage_id(), key.seal(session.to_json()), self._ttl(session, now)
        )
        return format_ticket(key)

    async def load(self, ticket: str, now: float) -> Session | None:
        """The live session a ticket points to, or None (malformed, unknown, tampered or expired)."""
        key = parse_ticket(ticket)
        if key is None:
            return None
        blob = await self.store.get(SESSION_PREFIX + key.storage_id())
        if blob is None:
            return None
        plain = key.open(blob)
        session = Session.from_json(plain) if plain is not None else None
        if session is None:
            log.warning("session ticket did not decrypt its record", extra={"event": "session_tampered"})
            return None
        if now - session.last_seen > self.idle_timeout or now - session.created_at > self.lifetime:
            await self.store.delete(SESSION_PREFIX + key.storage_id())
            return None
        if now - session.last_seen > TOUCH_INTERVAL:
            session.last_seen = now
            await self.store.put(
                SESSION_PREFIX + key.storage_id(), key.seal(session.to_json()), self._ttl(session, now)
            )
        return session

    async def delete(self, ticket: str) -> None:
        """Remove the session a ticket points to (logout); unknown tickets are ignored."""
        key = parse_ticket(ticket)
        if key is not None:
            await self.store.delete(SESSION_PREFIX + key.storage_id())

    async def save_login_state(self, state: LoginState) -> str:
        """Store login state for ten minutes; return the opaque ``state`` value to send to Entra."""
        key = SealKey.new()
        await self.store.put(STATE_PREFIX + key.storage_id(), key.seal(state.to_json()), LOGIN_STATE_TTL)
        return str(key)

    async def take_login_state(self, state: str, now: float) -> LoginState | None:
        """Consume login state exactly once; None when unknown, replayed, tampered or too old."""
        key = SealKey.parse(state)
        if key is None:
            return None
        blob = await self.store.take(STATE_PREFIX + key.storage_id())
        if blob is None:
            return None
        plain = key.open(blob)
        login = LoginState.from_json(plain) if plain is not None else None
        if login is None or now - login.created_at > LOGIN_STATE_TTL:
            return None
        return login

"""Pending logins: the server-side state between ``/start`` and the callback, sealed, and bounded in number.

Each started login stores a sealed ``LoginState`` for ten minutes under ``st:{storage id}``; the OAuth
``state`` is its ``{id}.{key}``. Anyone can start logins, so the number outstanding per store is capped
(``sessions.max_pending_logins``): every start is recorded in one time-ordered set (``st-order``), and past
the cap the oldest states are deleted first. A flood therefore cannot grow the store without bound; with
the per-client rate limit in front (``broker/identity/login_rate.py``) one address alone cannot fill the cap.

The callback reads a state (``read``) to check the browser binding and redeem the code, and consumes it
(``take``, atomic across replicas) only once the code was redeemed: a callback that failed because the
identity provider was down can be retried, while a state still completes at most one login.
"""

from __future__ import annotations

from broker.sessions.model import LoginState
from broker.sessions.sealing import SealKey, ServerKeys
from broker.sessions.store import SessionStore

STATE_PREFIX = "st:"
ORDER_KEY = "st-order"
LOGIN_STATE_TTL = 600.0
MAX_STATE_LENGTH = 128  # a real state is 2 x base64url(32 bytes) + "."; anything longer is junk


class PendingLogins:
    """Saves, reads and consumes login state; keeps at most ``cap`` outstanding (oldest evicted first)."""

    def __init__(self, store: SessionStore, cap: int, keys: ServerKeys) -> None:
        self.store = store
        self.cap = cap
        self.keys = keys  # the server keys take part in every seal, login state included

    async def save(self, state: LoginState) -> str:
        """Store login state for ten minutes; return the opaque ``state`` value to send to Entra."""
        key = SealKey.new(self.keys)
        storage_id = key.storage_id()
        await self.store.put(STATE_PREFIX + storage_id, key.seal(state.to_json()), LOGIN_STATE_TTL)
        evicted = await self.store.capped_add(
            ORDER_KEY, storage_id, state.created_at, self.cap, LOGIN_STATE_TTL
        )
        for old in evicted:
            await self.store.delete(STATE_PREFIX + old)
        return str(key)

    async def read(self, state: str, now: float) -> LoginState | None:
        """The login state without consuming it; None when unknown, tampered, evicted or too old."""
        key = SealKey.parse(state, self.keys) if len(state) <= MAX_STATE_LENGTH else None
        if key is None:
            return None
        return _opened(key, await self.store.get(STATE_PREFIX + key.storage_id()), now)

    async def take(self, state: str, now: float) -> LoginState | None:
        """Consume login state exactly once (across replicas); None when already consumed or invalid."""
        key = SealKey.parse(state, self.keys) if len(state) <= MAX_STATE_LENGTH else None
        if key is None:
            return None
        return _opened(key, await self.store.take(STATE_PREFIX + key.storage_id()), now)


def _opened(key: SealKey, blob: bytes | None, now: float) -> LoginState | None:
    if blob is None:
        return None
    plain = key.open(blob)
    login = LoginState.from_json(plain) if plain is not None else None
    if login is None or now - login.created_at > LOGIN_STATE_TTL:
        return None
    return login

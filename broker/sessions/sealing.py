"""Sealed records: the cookie (or ``state``) holds ``{id}.{key}``, the store holds only ciphertext.

Each record gets its own random 256-bit AES-GCM key that lives only in the ticket the client holds.
The store indexes the ciphertext under SHA-256 of the id, so a dump of Redis reveals no token and no
claim, and cannot be turned back into a working ticket (that needs both the id and the key).
The storage key is bound into the AEAD's associated data, so ciphertexts cannot be swapped between keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import cached_property

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ID_BYTES = 18
KEY_BYTES = 32
NONCE_BYTES = 12


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str, expected_len: int) -> bytes | None:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        return None
    # Re-encoding must give the same text, so one ticket has exactly one spelling.
    return raw if len(raw) == expected_len and _b64(raw) == text else None


@dataclass(frozen=True)
class SealKey:
    """The id and key of one sealed record: ``{id}.{key}`` in base64url."""

    record_id: bytes
    key: bytes

    @classmethod
    def new(cls) -> SealKey:
        """A fresh random id and key (never reused: session ids rotate at every login)."""
        return cls(secrets.token_bytes(ID_BYTES), secrets.token_bytes(KEY_BYTES))

    @classmethod
    def parse(cls, text: str) -> SealKey | None:
        """Parse ``{id}.{key}``; None for anything malformed (tampered, truncated, padded)."""
        parts = text.split(".")
        if len(parts) != 2:
            return None
        record_id, key = _unb64(parts[0], ID_BYTES), _unb64(parts[1], KEY_BYTES)
        if record_id is None or key is None:
            return None
        return cls(record_id, key)

    def __str__(self) -> str:
        return f"{_b64(self.record_id)}.{_b64(self.key)}"

    def __repr__(self) -> str:  # never print the key
        return f"SealKey(id_hash={self.storage_id()[:12]}…)"

    def storage_id(self) -> str:
        """What the store is indexed by: a hash of the id, useless without the ticket."""
        return self._storage_id

    @cached_property
    def _storage_id(self) -> str:
        # Computed once per parsed ticket: it is asked for several times per request.
        return hashlib.sha256(self.record_id).hexdigest()

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt and authenticate ``plaintext`` for storage."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + AESGCM(self.key).encrypt(nonce, plaintext, self.storage_id().encode())

    def open(self, blob: bytes) -> bytes | None:
        """Decrypt a stored blob; None when it was not sealed with this key and id."""
        if len(blob) <= NONCE_BYTES:
            return None
        try:
            return AESGCM(self.key).decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], self.storage_id().encode()
            )
        except InvalidTag:
            return None

    def same_as(self, other: SealKey) -> bool:
        """Constant-time comparison."""
        return hmac.compare_digest(self.record_id + self.key, other.record_id + other.key)

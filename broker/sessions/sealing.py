"""Sealed records: the cookie (or ``state``) holds ``{id}.{key}``, the store holds only ciphertext that
needs a server secret as well.

Each record's AES-GCM key is derived with HKDF from two secrets that never meet in one place outside the
gateway: a **server key** (``sessions.secret_keys``, held by the gateway only) and the 256-bit **ticket
key** (held by the client only). So neither a Redis writer (no server key) nor a cookie holder (no server
key, and no write access to the store) can make a record that opens; a Redis reader gets neither.
The derivation also binds the record's purpose and storage id, and the blob's header (format, key id,
generation, nonce) is the AEAD's associated data, so ciphertexts cannot be moved between keys, purposes or
generations.

Blob layout: ``0x02 | key id (4) | generation (8, big endian) | nonce (12) | ciphertext+tag``. The first
``HEADER_BYTES`` are unique per write (random nonce), which is what compare-and-set writes compare.
A revoked session's record is replaced by ``TOMBSTONE`` (see ``manager.py``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ID_BYTES = 18
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID_BYTES = 4
MIN_SERVER_KEY_BYTES = 32
FORMAT = b"\x02"
_HEADER = struct.Struct(">c4sQ12s")  # format, key id, generation, nonce
HEADER_BYTES = _HEADER.size
# What a revoked session's record becomes: never a valid blob (wrong format byte), so nothing opens it and
# no compare-and-set against a real header can match it.
TOMBSTONE = b"\x00revoked"
_KDF_LABEL = b"entra-broker record key v2"


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
class Sealed:
    """A blob's parsed header: who sealed it, its generation, and the bytes a compare-and-set compares."""

    key_id: bytes
    generation: int
    header: bytes


def read_header(blob: bytes) -> Sealed | None:
    """The header of a sealed blob; None for a tombstone or anything else that is not one."""
    if len(blob) <= HEADER_BYTES or not blob.startswith(FORMAT):
        return None
    _fmt, key_id, generation, _nonce = _HEADER.unpack_from(blob)
    return Sealed(key_id, generation, blob[:HEADER_BYTES])


class ServerKeys:
    """The gateway's own secrets: the first seals (and names indexes), every one opens (rotation)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or any(len(k) < MIN_SERVER_KEY_BYTES for k in keys):
            raise ValueError(f"server keys must be at least {MIN_SERVER_KEY_BYTES} bytes each")
        self.keys = tuple(keys)
        # A short public id per key, so opening picks the right key instead of trying each.
        self._by_id = {self.key_id(k): k for k in reversed(self.keys)}

    @classmethod
    def random(cls) -> ServerKeys:
        """A per-process key (memory store only: its records die with the process anyway)."""
        return cls([secrets.token_bytes(KEY_BYTES)])

    @staticmethod
    def key_id(key: bytes) -> bytes:
        """A public id of a key (HMAC of a constant: says nothing about the key)."""
        return hmac.new(key, b"entra-broker key id", hashlib.sha256).digest()[:KEY_ID_BYTES]

    def by_id(self, key_id: bytes) -> bytes | None:
        """The configured key with this id, if any (a key removed from the config no longer opens)."""
        return self._by_id.get(key_id)

    def index_names(self, kind: str, parts: Sequence[str]) -> list[str]:
        """Keyed names of one index, the sealing key's first: HMAC-SHA256, so a Redis reader who knows a
        user's directory ids cannot compute (or confirm) the name of their index."""
        message = ("\x1f".join([kind, *(p.lower() for p in parts)])).encode()
        return [hmac.new(k, message, hashlib.sha256).hexdigest() for k in self.keys]


def _record_key(server_key: bytes, ticket_key: bytes, purpose: bytes, storage_id: str) -> bytes:
    # HKDF (RFC 5869): the server key is the input keying material, the client's ticket key the salt, and
    # the purpose and storage id the context. Both secrets are needed to get the AES key.
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=ticket_key,
        info=_KDF_LABEL + b"\x00" + purpose + b"\x00" + storage_id.encode(),
    ).derive(server_key)


@dataclass(frozen=True)
class SealKey:
    """The id and key of one sealed record (``{id}.{key}`` in base64url), with the server keys that take
    part in every seal. ``new`` and ``parse`` without ``server`` give a key that can be formatted and
    compared, but cannot seal or open."""

    record_id: bytes
    key: bytes
    server: ServerKeys | None = field(default=None, compare=False)

    @classmethod
    def new(cls, server: ServerKeys | None = None) -> SealKey:
        """A fresh random id and key (never reused: session ids rotate at every login)."""
        return cls(secrets.token_bytes(ID_BYTES), secrets.token_bytes(KEY_BYTES), server)

    @classmethod
    def parse(cls, text: str, server: ServerKeys | None = None) -> SealKey | None:
        """Parse ``{id}.{key}``; None for anything malformed (tampered, truncated, padded)."""
        parts = text.split(".")
        if len(parts) != 2:
            return None
        record_id, key = _unb64(parts[0], ID_BYTES), _unb64(parts[1], KEY_BYTES)
        if record_id is None or key is None:
            return None
        return cls(record_id, key, server)

    def with_server(self, server: ServerKeys) -> SealKey:
        """The same ticket, able to seal and open with these server keys."""
        return SealKey(self.record_id, self.key, server)

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

    def _server(self) -> ServerKeys:
        if self.server is None:
            raise ValueError("sealing needs the server keys")  # a programming error, never input
        return self.server

    def seal(self, plaintext: bytes, generation: int = 0, purpose: bytes = b"record") -> bytes:
        """Encrypt and authenticate ``plaintext`` with the first server key and this ticket's key."""
        server_key = self._server().keys[0]
        header = _HEADER.pack(
            FORMAT, ServerKeys.key_id(server_key), generation, secrets.token_bytes(NONCE_BYTES)
        )
        aead = AESGCM(_record_key(server_key, self.key, purpose, self.storage_id()))
        return header + aead.encrypt(header[-NONCE_BYTES:], plaintext, header)

    def open(self, blob: bytes, purpose: bytes = b"record") -> bytes | None:
        """Decrypt a stored blob; None unless it was sealed for this ticket, purpose and id with one of the
        configured server keys."""
        sealed = read_header(blob)
        if sealed is None:
            return None
        server_key = self._server().by_id(sealed.key_id)
        if server_key is None:
            return None
        aead = AESGCM(_record_key(server_key, self.key, purpose, self.storage_id()))
        try:
            return aead.decrypt(sealed.header[-NONCE_BYTES:], blob[HEADER_BYTES:], sealed.header)
        except InvalidTag:
            return None

    def same_as(self, other: SealKey) -> bool:
        """Constant-time comparison."""
        return hmac.compare_digest(self.record_id + self.key, other.record_id + other.key)

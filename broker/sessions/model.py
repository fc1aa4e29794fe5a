"""What a session and a pending login hold; serialised to JSON before being sealed."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

T = TypeVar("T")


def _from_json(cls: type[T], raw: bytes) -> T | None:
    """Decode a record written by this or an older version; None when it does not fit the class."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    try:
        return cls(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        return None


@dataclass
class Session:
    """A signed-in user at one company. Identified by ``tid`` + ``oid`` only, never by email."""

    login_code: str
    tid: str
    oid: str
    name: str = ""
    preferred_username: str = ""
    email: str = ""
    role: str | None = None
    roles: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    # The ID-token claims the company keeps (``keep_claims``), bounded at sign-in; sealed with the rest.
    claims: dict[str, Any] = field(default_factory=dict)
    sid: str | None = None
    login_hint: str | None = None
    refresh_token: str | None = None
    id_token_expires_at: float = 0.0
    csrf: str = ""
    created_at: float = 0.0
    last_seen: float = 0.0
    refreshed_at: float = 0.0
    refresh_failed_at: float = 0.0

    @property
    def user_key(self) -> str:
        """The stable user key ``tid:oid``."""
        return f"{self.tid}:{self.oid}"

    def to_json(self) -> bytes:
        """Compact JSON for sealing."""
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Session | None:
        """Decode, or None when the record is not a session."""
        return _from_json(cls, raw)

    def public_claims(self) -> dict[str, Any]:
        """The identity as shown to the user and the upstream (no tokens)."""
        return {
            "sub": self.user_key,
            "tid": self.tid,
            "oid": self.oid,
            "name": self.name,
            "preferred_username": self.preferred_username,
            "email": self.email,
            "role": self.role,
            "roles": list(self.roles),
            "groups": list(self.groups),
            "login_code": self.login_code,
        }


@dataclass
class LoginState:
    """What the broker remembers between sending the user to Entra and the callback."""

    login_code: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    return_to: str
    created_at: float
    browser_binding: str = ""  # SHA-256 of the login-binding cookie of the browser that started it

    def to_json(self) -> bytes:
        """Compact JSON for sealing."""
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LoginState | None:
        """Decode, or None when the record is not login state."""
        return _from_json(cls, raw)

"""In-memory grants: single-use authorization codes and refresh tokens, expiring on an injected clock."""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

CODE_LIFETIME = 600.0
# Entra's refresh tokens for Web apps expire after 90 days of inactivity.
REFRESH_TOKEN_LIFETIME = 90 * 24 * 3600.0
_CODE_MEMORY = 3600.0
_REFRESH_MEMORY = 24 * 3600.0


@dataclass(frozen=True)
class CodeGrant:
    """What an authorization code was issued for; the token endpoint checks each field against the request."""

    tenant_id: str
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str
    scopes: tuple[str, ...]
    oid: str
    sid: str
    expires_at: float = 0.0
    redeemed: bool = False


@dataclass(frozen=True)
class RefreshGrant:
    """What a refresh token stands for: the sign-in it continues."""

    tenant_id: str
    client_id: str
    scopes: tuple[str, ...]
    oid: str
    sid: str
    issued_at: float = 0.0
    expires_at: float = 0.0


class GrantUnknown(Exception):
    """No such code or refresh token (or it expired long enough ago to be forgotten)."""


class GrantExpired(Exception):
    """The grant exists but its lifetime is over."""

    def __init__(self, issued_at: float) -> None:
        self.issued_at = issued_at
        super().__init__("grant expired")


class GrantAlreadyUsed(Exception):
    """The authorization code was redeemed before."""


class GrantStore:
    """Codes and refresh tokens of one dev IdP process; nothing survives a restart, as befits a test IdP."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        # Every grant of a kind has the same lifetime, so insertion order is expiry order: pruning pops
        # from the front and stops at the first live grant (it once scanned all, per issued grant, and a
        # sign-in loop slowed down with every login).
        self._codes: OrderedDict[str, CodeGrant] = OrderedDict()
        self._refresh_tokens: OrderedDict[str, RefreshGrant] = OrderedDict()

    def issue_code(self, grant: CodeGrant) -> str:
        """Store ``grant`` for ten minutes and return its new, unguessable code."""
        self._forget_expired()
        code = secrets.token_urlsafe(48)
        self._codes[code] = replace(grant, expires_at=self._clock() + CODE_LIFETIME, redeemed=False)
        return code

    def redeem_code(self, code: str) -> CodeGrant:
        """Return the code's grant and mark it used; every redemption attempt consumes the code."""
        grant = self._codes.get(code)
        if grant is None:
            raise GrantUnknown
        if self._clock() >= grant.expires_at:
            raise GrantExpired(grant.expires_at - CODE_LIFETIME)
        if grant.redeemed:
            raise GrantAlreadyUsed
        # Keep the redeemed code until it expires so a replay is reported as reuse (AADSTS54005).
        self._codes[code] = replace(grant, redeemed=True)
        return grant

    def issue_refresh_token(self, grant: RefreshGrant) -> str:
        """Store ``grant`` for the refresh-token lifetime and return its new token."""
        self._forget_expired()
        token = secrets.token_urlsafe(64)
        now = self._clock()
        self._refresh_tokens[token] = replace(grant, issued_at=now, expires_at=now + REFRESH_TOKEN_LIFETIME)
        return token

    def use_refresh_token(self, token: str) -> RefreshGrant:
        """Return the token's grant; like Entra, using it does not revoke it (rotation without revocation)."""
        grant = self._refresh_tokens.get(token)
        if grant is None:
            raise GrantUnknown
        if self._clock() >= grant.expires_at:
            raise GrantExpired(grant.issued_at)
        return grant

    def _forget_expired(self) -> None:
        # Expired grants are remembered a while so they answer "expired" (AADSTS70008 / 700082) rather than
        # "unknown", then pruned so memory stays bounded under a sign-in loop.
        now = self._clock()
        _drop_oldest(self._codes, now - _CODE_MEMORY)
        _drop_oldest(self._refresh_tokens, now - _REFRESH_MEMORY)


def _drop_oldest(grants: OrderedDict[str, Any], expired_before: float) -> None:
    """Pop grants from the oldest end while they expired before ``expired_before``."""
    while grants:
        key = next(iter(grants))
        if grants[key].expires_at >= expired_before:
            return
        grants.popitem(last=False)

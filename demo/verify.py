"""Verify the gateway's identity assertion against the JWKS it publishes: the demo backend's only trust."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt

# RS256 is allowed because the gateway may be configured with RSA keys; HS* and "none" never are, so a
# token cannot pick an algorithm that turns a public key into a shared secret (RFC 8725 section 3.1).
ALLOWED_ALGORITHMS: tuple[str, ...] = ("ES256", "RS256")
LEEWAY_SECONDS = 30.0
MIN_REFETCH_INTERVAL_SECONDS = 30.0
FETCH_TIMEOUT_SECONDS = 5.0
REQUIRED_CLAIMS: tuple[str, ...] = ("exp", "iat", "iss")


class KeyLookupFailed(Exception):
    """No key could be found for an assertion's ``kid``; the message says why."""


@dataclass(frozen=True)
class AssertionReport:
    """What the demo backend concluded about the assertion header of one request."""

    present: bool
    valid: bool = False
    error: str | None = None
    header: dict[str, Any] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict)
    # Shown only to explain a rejection; never to be trusted.
    unverified_claims: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The JSON form served by the whoami page."""
        return {
            "present": self.present,
            "valid": self.valid,
            "error": self.error,
            "header": self.header,
            "claims": self.claims,
            "unverified_claims": self.unverified_claims,
        }


class JwksCache:
    """The gateway's public keys, fetched on demand; an unknown ``kid`` refetches at most every 30 s."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_refetch_interval: float = MIN_REFETCH_INTERVAL_SECONDS,
    ) -> None:
        self._url = url
        self._clock = clock
        self._min_refetch_interval = min_refetch_interval
        self._keys: jwt.PyJWKSet | None = None
        self._attempted_at: float | None = None
        # One fetch at a time: a burst of requests after a key rotation must not stampede the gateway.
        self._lock = asyncio.Lock()

    async def key(self, session: aiohttp.ClientSession, kid: str) -> jwt.PyJWK:
        """Return the key with this ``kid``, refetching the JWKS if it is unknown and the limit allows."""
        found = self._lookup(kid)
        if found is not None:
            return found
        async with self._lock:
            found = self._lookup(kid)
            if found is not None:
                return found  # another request refetched while we waited
            if self._keys is not None and not self._refetch_allowed():
                raise KeyLookupFailed(
                    f"unknown kid {kid!r} (JWKS refetched less than {self._min_refetch_interval:g} s ago)"
                )
            await self._fetch(session)
        found = self._lookup(kid)
        if found is None:
            raise KeyLookupFailed(f"unknown kid {kid!r}: not in the JWKS at {self._url}")
        return found

    def _refetch_allowed(self) -> bool:
        return self._attempted_at is None or self._clock() - self._attempted_at >= self._min_refetch_interval

    def _lookup(self, kid: str) -> jwt.PyJWK | None:
        if self._keys is None:
            return None
        return next((k for k in self._keys.keys if k.key_id == kid), None)

    async def _fetch(self, session: aiohttp.ClientSession) -> None:
        self._attempted_at = self._clock()
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
        try:
            async with session.get(self._url, timeout=timeout, allow_redirects=False) as response:
                if response.status != 200:
                    raise KeyLookupFailed(f"JWKS at {self._url} answered HTTP {response.status}")
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise KeyLookupFailed(f"could not fetch the JWKS at {self._url}: {exc!r}") from exc
        if not isinstance(data, dict):
            raise KeyLookupFailed(f"JWKS at {self._url} is not a JSON object")
        try:
            self._keys = jwt.PyJWKSet.from_dict(data)
        except jwt.PyJWTError as exc:
            raise KeyLookupFailed(f"JWKS at {self._url} is unusable: {exc}") from exc


async def verify_assertion(
    tokens: Sequence[str],
    *,
    keys: JwksCache,
    session: aiohttp.ClientSession,
    issuer: str,
    audiences: Sequence[str] | None,
) -> AssertionReport:
    """Verify the assertion header values of one request; never raises, invalid reports say why."""
    if not tokens:
        return AssertionReport(present=False)
    if len(tokens) > 1:
        # Which copy would the app read? Refuse the ambiguity rather than guess.
        return AssertionReport(present=True, error=f"{len(tokens)} assertion headers received, expected one")
    token = tokens[0]
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        return AssertionReport(present=True, error=str(exc))
    unverified = _peek_claims(token)
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        return AssertionReport(
            present=True, error="assertion has no kid", header=header, unverified_claims=unverified
        )
    try:
        key = await keys.key(session, kid)
        claims = jwt.decode(
            token,
            key,
            algorithms=list(ALLOWED_ALGORITHMS),
            issuer=issuer,
            audience=list(audiences) if audiences else None,
            leeway=LEEWAY_SECONDS,
            options={"require": list(REQUIRED_CLAIMS), "verify_aud": bool(audiences)},
        )
    except (KeyLookupFailed, jwt.PyJWTError) as exc:
        return AssertionReport(present=True, error=str(exc), header=header, unverified_claims=unverified)
    return AssertionReport(present=True, valid=True, header=header, claims=claims)


def _peek_claims(token: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims

"""Bearer callers on API routes: which company's token it is, whether it is valid, and who it names.

A token is validated once (``oidc/access_tokens.py``: signature with the company's keys, issuer, audience,
tenant, dates) and the result cached by the token's SHA-256 and the route until the token expires, bounded,
so a hot API client costs a hash and a dictionary lookup per request, not a signature check. Nothing is
stored: a bearer call creates no session. The caller becomes a ``BearerPrincipal`` (a ``Session`` that is
never stored) so the same signed assertion and identity headers go upstream.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from broker.config.schema import ApiConfig, TenantConfig
from broker.errors import InvalidToken
from broker.identity.policy import Decision, map_roles
from broker.oidc.access_tokens import AccessToken, ApiExpectations, peek_claims, validate_access_token
from broker.oidc.discovery import DiscoveryCache, Source
from broker.oidc.tokens import UnknownSigningKey
from broker.oidc.verifier import allowed_tenants
from broker.ops.caches import SweepSchedule, sweep
from broker.proxy.routing import Route
from broker.sessions.model import Session

DEFAULT_MAX_ENTRIES = 10_000
# Entra access tokens are 1-3 KB; anything far larger is refused before it is parsed.
MAX_TOKEN_LENGTH = 16 * 1024
# RFC 6750 section 2.1: credentials = "Bearer" 1*SP b64token. Only the scheme is case-insensitive: a
# case-insensitive class would fold every character of a 1-3 KB token (12.7 us instead of 2.2 us a request).
_BEARER = re.compile(r"(?i:Bearer) +([A-Za-z0-9\-._~+/]+=*)")


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None without one ("" when malformed)."""
    value = headers.get("Authorization")
    if value is None or not value[:7].lower().startswith("bearer"):
        return None
    match = _BEARER.fullmatch(value.strip()) if len(value) <= MAX_TOKEN_LENGTH else None
    return match.group(1) if match else ""


@dataclass
class BearerPrincipal(Session):
    """An API caller as the assertion shows it: a user (``tid:oid``) or an application's service principal."""

    client_id: str = ""
    scp: str = ""
    app_only: bool = False

    def public_claims(self) -> dict[str, Any]:
        """The session claims plus who called (``azp``/``appid``), its scopes and whether it is an app."""
        claims = super().public_claims()
        claims.update(azp=self.client_id, appid=self.client_id, scp=self.scp)
        claims["idtyp"] = "app" if self.app_only else "user"
        return claims


def decide_api_access(api: ApiConfig, caller: AccessToken) -> Decision:
    """Delegated tokens need one of the route's scopes, app-only tokens one of its app roles."""
    if caller.app_only:
        if not set(api.app_roles) & set(caller.roles):
            return Decision(False, "the application has none of this API's app roles")
    elif not set(api.scopes) & caller.scopes:
        return Decision(False, "the token has none of this API's scopes")
    return Decision(True)


class BearerAuthenticator:
    """Validated access tokens per (token hash, route), for one config generation."""

    def __init__(
        self,
        tenants: Mapping[str, TenantConfig],
        discovery: DiscoveryCache,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self._tenants = tenants
        self._discovery = discovery
        self._cache: dict[tuple[bytes, int], tuple[BearerPrincipal, AccessToken]] = {}
        self._sweeps = SweepSchedule(max_entries)

    async def authenticate(self, token: str, route: Route, now: float) -> tuple[BearerPrincipal, AccessToken]:
        """The caller of a valid token for ``route``'s API; ``InvalidToken`` naming the rule otherwise."""
        api = route.config.api
        assert api is not None
        key = (hashlib.sha256(token.encode()).digest(), route.index)
        cached = self._cache.get(key)
        if cached is not None and cached[1].expires_at > now:
            return cached
        code, tenant = self._company(route, str(peek_claims(token).get("tid", "")).lower())
        caller = await self._validate(token, tenant, api, now)
        _, roles = map_roles(tenant.roles, caller.roles, [])
        principal = BearerPrincipal(
            login_code=code,
            tid=caller.tid,
            oid=caller.oid,
            name=caller.name or caller.client_id,
            preferred_username=caller.preferred_username,
            role=roles[-1] if roles else None,
            roles=roles,
            # These two key the assertion cache: each token (hence each scope set) gets its own assertion.
            created_at=caller.expires_at,
            refreshed_at=float(int.from_bytes(key[0][:6], "big")),
            client_id=caller.client_id,
            scp=" ".join(sorted(caller.scopes)),
            app_only=caller.app_only,
        )
        if self._sweeps.due(len(self._cache), now):
            sweep(self._cache, lambda entry: entry[1].expires_at, now, self._sweeps.max_entries)
        self._cache[key] = (principal, caller)
        return principal, caller

    def _company(self, route: Route, tid: str) -> tuple[str, TenantConfig]:
        """The company of the route whose tenant issued the token (its keys will decide)."""
        codes = route.config.allow.login_codes or list(self._tenants)
        for code in codes:
            tenant = self._tenants.get(code)
            if tenant is None:
                continue
            if tid == tenant.tenant_id.lower() or tid in {t.lower() for t in tenant.allowed_tenants}:
                return code, tenant
        raise InvalidToken("tid is not a tenant of a company allowed on this route")

    async def _validate(self, token: str, tenant: TenantConfig, api: ApiConfig, now: float) -> AccessToken:
        # Access tokens are signed with the tenant's common keys, never app-specific ones.
        source = Source(tenant.authority, tenant.tenant_id, None)
        metadata = await self._discovery.metadata(source)
        expect = ApiExpectations(
            audiences=frozenset(api.audiences),
            v2_issuer=metadata.issuer,
            allowed_tenants=allowed_tenants(metadata, tenant),
            clock_skew=tenant.clock_skew,
        )
        keys = await self._discovery.keys(source)
        try:
            return validate_access_token(token, keys, expect, now)
        except UnknownSigningKey:
            # Keys roll over: refetch once (rate-limited inside the cache), then decide.
            keys = await self._discovery.keys(source, unknown_kid=True)
            return validate_access_token(token, keys, expect, now)

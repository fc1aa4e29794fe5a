"""Keep sessions fresh: redeem the refresh token before the ID token (or the configured validity) runs out.

- One refresh per session across every replica: a store lock (Redis: leased, extended while the refresh
  runs). Requests that find the lock taken wait briefly, then re-read the session and use the new state.
- Fenced by construction: the refresh writes with a compare-and-set against the record it read under the
  lock, so a holder that stalled past its lease (someone else refreshed) or a session revoked meanwhile
  (logout, front-channel logout, operator) makes the write fail; the refresher then re-reads, and a
  revoked session stays revoked.
- ``invalid_grant`` (revoked, expired, user disabled) ends the session: the next browser request goes to
  the company login, API requests get 401.
- A transient failure (IdP down, 5xx, timeout) keeps the session until its absolute lifetime and retries
  after ``RETRY_AFTER_FAILURE``; it is logged.
- Roles and groups are recomputed from the refreshed ID token (a role removed in Entra disappears).
- A refreshed token must name the same ``tid`` and ``oid``: a refresh can never switch the user.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

import aiohttp

from broker.config.schema import DEFAULT_WITHOUT_REFRESH_TOKEN, TenantConfig, WithoutRefreshToken
from broker.errors import (
    GroupsOverageError,
    IdentityProviderRejected,
    IdentityProviderUnavailable,
    InvalidToken,
    SessionEnded,
    SessionStoreUnavailable,
)
from broker.identity.claim_keeping import kept_claims
from broker.identity.policy import identity_from_claims, string_list
from broker.oidc.client import refresh_tokens
from broker.oidc.credentials import ClientCredential
from broker.oidc.discovery import DiscoveryCache
from broker.oidc.groups import fetch_groups, has_group_overage
from broker.oidc.verifier import source_of, verify_id_token
from broker.ops.events import audit
from broker.ops.metrics import Metrics
from broker.sessions.manager import SessionManager, StoredSession
from broker.sessions.model import Session
from broker.sessions.sealing import SealKey

log = logging.getLogger(__name__)

LOCK_LEASE = 10.0
LOCK_WAIT = 5.0
RETRY_AFTER_FAILURE = 30.0


def refresh_due(session: Session, now: float, refresh_before: float, revalidate_every: float | None) -> bool:
    """Whether the session should be refreshed now (pure)."""
    due_at = session.id_token_expires_at - refresh_before
    if revalidate_every is not None:
        due_at = min(due_at, session.refreshed_at + revalidate_every)
    if now < due_at:
        return False
    return now - session.refresh_failed_at >= RETRY_AFTER_FAILURE


@dataclass
class SessionRefresher:
    """Refreshes sessions through their company's token endpoint."""

    sessions: SessionManager
    discovery: DiscoveryCache
    http: aiohttp.ClientSession
    tenants: Mapping[str, TenantConfig]
    credentials: Mapping[str, ClientCredential]
    refresh_before: float
    revalidate_every: float | None
    metrics: Metrics | None = None
    # ``sessions.without_refresh_token``: what a session the IdP gave no refresh token is worth (schema.py).
    without_refresh_token: WithoutRefreshToken = DEFAULT_WITHOUT_REFRESH_TOKEN

    def _count(self, company: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.refreshes.labels(company, result).inc()

    def due(self, session: Session, now: float) -> bool:
        """Whether ``ensure_fresh`` has anything to do (checked first, without a coroutine, per request)."""
        return refresh_due(session, now, self.refresh_before, self.revalidate_every)

    async def ensure_fresh(self, key: SealKey, session: Session, now: float) -> Session | None:
        """The session to use for this request: as is, refreshed, or None when it has ended."""
        if not self.due(session, now):
            return session
        if session.refresh_token is None:
            # Nothing can re-validate the user. "session" keeps the session for the manager's idle_timeout and
            # lifetime (a user disabled at Entra keeps access until then); "id_token" (the default) ends it
            # with the ID token, the longest the IdP vouched for the user.
            if self.without_refresh_token == "session" or now < session.id_token_expires_at:
                return session
            await self.sessions.revoke(key.storage_id())
            return None
        async with self.sessions.store.lock("refresh:" + key.storage_id(), LOCK_LEASE, LOCK_WAIT) as acquired:
            current = await self.sessions.read(key)
            if current is None:
                return None  # revoked meanwhile
            if not acquired or not self.due(current.session, now):
                return current.session  # another request (or replica) refreshed it, or is still at it
            return await self._refresh(key, current, now)

    async def _write(self, key: SealKey, read: StoredSession, session: Session, now: float) -> Session | None:
        """Compare-and-set; if the record changed meanwhile, what is there now wins (never overwrite)."""
        if await self.sessions.replace(key, read, session, now):
            return session
        log.info(
            "session changed during its refresh; using the stored one", extra={"event": "refresh_fenced"}
        )
        again = await self.sessions.read(key)
        return again.session if again is not None else None

    async def _refresh(self, key: SealKey, read: StoredSession, now: float) -> Session | None:
        session = read.session
        tenant = self.tenants.get(session.login_code)
        if tenant is None or session.refresh_token is None:
            await self.sessions.revoke(key.storage_id())
            return None
        try:
            refreshed = await self._redeem(tenant, session, session.refresh_token, now)
        except SessionEnded as exc:
            audit("refresh_failure", who=session.user_key, company=session.login_code, why=str(exc))
            audit("session_revoked", who=session.user_key, company=session.login_code, why="refresh refused")
            self._count(session.login_code, "ended")
            await self.sessions.revoke(key.storage_id())
            return None
        except (IdentityProviderUnavailable, GroupsOverageError) as exc:
            log.warning(
                "refresh failed, keeping the session and retrying later: %s",
                exc,
                extra={"event": "refresh_retry", "company": session.login_code, "user": session.user_key},
            )
            self._count(session.login_code, "retry")
            try:
                return await self._write(key, read, replace(session, refresh_failed_at=now), now)
            except SessionStoreUnavailable as store_exc:
                # Bookkeeping only: the session was read and verified, so it serves this request anyway.
                log.warning(
                    "could not record the refresh failure: %s",
                    store_exc,
                    extra={"event": "bookkeeping_failed"},
                )
                return session
        self._count(session.login_code, "success")
        return await self._write(key, read, refreshed, now)

    async def _redeem(
        self, tenant: TenantConfig, session: Session, refresh_token: str, now: float
    ) -> Session:
        metadata = await self.discovery.metadata(source_of(tenant))
        try:
            tokens = await refresh_tokens(
                self.http,
                metadata,
                tenant,
                self.credentials[session.login_code],
                refresh_token=refresh_token,
                now=now,
            )
        except IdentityProviderRejected as exc:
            raise SessionEnded(f"{exc.error} {exc.error_codes}") from exc
        try:
            claims = await verify_id_token(
                self.discovery, tenant, metadata, tokens.id_token, nonce=None, now=now
            )
        except InvalidToken as exc:
            raise SessionEnded(f"refreshed ID token rejected: {exc}") from exc
        if (
            str(claims["tid"]).lower() != session.tid.lower()
            or str(claims["oid"]).lower() != session.oid.lower()
        ):
            raise SessionEnded("refreshed ID token names another user")
        groups = string_list(claims.get("groups"))
        if has_group_overage(claims):
            if tenant.groups_overage != "graph" or not tokens.access_token:
                raise SessionEnded("group overage and groups_overage is deny")
            groups = await fetch_groups(self.http, tenant.graph_url, tokens.access_token)
        identity = identity_from_claims(tenant.roles, claims, groups)
        if tenant.roles.require_role and not identity["roles"]:
            raise SessionEnded("the user's last role was removed (require_role)")
        return replace(
            session,
            **identity,
            claims=kept_claims(tenant.keep_claims, claims),
            # Entra rotates refresh tokens: keep the new one (the old one may stop working at any time).
            refresh_token=tokens.refresh_token or refresh_token,
            id_token_expires_at=float(claims["exp"]),
            refreshed_at=now,
            refresh_failed_at=0.0,
        )

"""Signing a user in: at login (``handlers/callback.py``) and at every refresh (``identity/refresh.py``) the
same steps, written once.

1. **Redeem** a grant at the company's token endpoint: the authorization code (with its PKCE verifier) at
   login, the refresh token at a refresh (``redeem_code`` / ``redeem_refresh_token``).
2. **Verify** the ID token it returned (``oidc/verifier.py``: every rule, the nonce at login); at a refresh
   the token must also name the user of the session (``tid`` + ``oid``): a refresh never switches the user.
3. **Resolve group overage**: a user in more groups than a token carries gets them from Graph when the
   company allows it (``groups_overage: graph``), else the sign-in is refused. Never "no groups".
4. **Build the identity** the token decides (names, broker roles, groups) and **check required roles**
   (``roles.require_role``: a user without one may not sign in, and loses the session at a refresh).

The outcomes are exceptions of ``errors.py``; the callback turns each into its page, the refresher into
"end the session" or "retry later" (a Graph failure, ``GroupsOverageError``, is transient there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from broker.config.schema import TenantConfig
from broker.errors import GroupsOverageRefused, NoRoleAssigned, UserChanged
from broker.identity.claim_keeping import kept_claims
from broker.identity.policy import identity_from_claims, string_list
from broker.oidc.client import TokenResponse, redeem_code, refresh_tokens
from broker.oidc.credentials import ClientCredential
from broker.oidc.discovery import DiscoveryCache, ProviderMetadata
from broker.oidc.groups import fetch_groups, has_group_overage
from broker.oidc.verifier import source_of, verify_id_token
from broker.sessions.model import Session


@dataclass(frozen=True)
class SignedIn:
    """What a verified ID token (and Graph, on overage) says about the user."""

    claims: Mapping[str, Any]
    # The session fields the token decides (``policy.identity_from_claims``): names, role, roles, groups,
    # and the kept claims.
    identity: dict[str, Any]
    tokens: TokenResponse

    @property
    def user_key(self) -> str:
        """``tid:oid``, as ``Session.user_key`` spells it (for the audit line of a refusal)."""
        return f"{self.claims['tid']}:{self.claims['oid']}"


@dataclass(frozen=True)
class CompanySignIn:
    """One company's sign-in: its config and credential, and the shared IdP client and key cache."""

    tenant: TenantConfig
    credential: ClientCredential
    discovery: DiscoveryCache
    http: aiohttp.ClientSession

    async def metadata(self) -> ProviderMetadata:
        """The company's IdP endpoints and keys (cached by ``DiscoveryCache``)."""
        return await self.discovery.metadata(source_of(self.tenant))

    async def redeem_code(
        self, metadata: ProviderMetadata, *, code: str, redirect_uri: str, code_verifier: str, now: float
    ) -> TokenResponse:
        """Tokens for an authorization code; ``IdentityProviderRejected`` when Entra refuses it."""
        return await redeem_code(
            self.http,
            metadata,
            self.tenant,
            self.credential,
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=code_verifier,
            now=now,
        )

    async def redeem_refresh_token(
        self, metadata: ProviderMetadata, refresh_token: str, now: float
    ) -> TokenResponse:
        """New tokens for a refresh token; ``IdentityProviderRejected`` when Entra refuses it."""
        return await refresh_tokens(
            self.http, metadata, self.tenant, self.credential, refresh_token=refresh_token, now=now
        )

    async def identify(
        self,
        metadata: ProviderMetadata,
        tokens: TokenResponse,
        *,
        nonce: str | None,
        now: float,
        same_user_as: Session | None = None,
    ) -> SignedIn:
        """Verify the ID token, resolve group overage, build the identity and check required roles.

        Raises ``InvalidToken``, ``UserChanged`` (``same_user_as`` given and another user named),
        ``GroupsOverageRefused``, ``GroupsOverageError`` (Graph failed) or ``NoRoleAssigned``."""
        claims = await verify_id_token(
            self.discovery, self.tenant, metadata, tokens.id_token, nonce=nonce, now=now
        )
        if same_user_as is not None and not names_user(claims, same_user_as):
            raise UserChanged("refreshed ID token names another user")
        groups = await self.groups(claims, tokens.access_token)
        identity = identity_from_claims(self.tenant.roles, claims, groups)
        # The claims the company keeps (``keep_claims``: header expressions and rules read them), bounded.
        identity["claims"] = kept_claims(self.tenant.keep_claims, claims)
        signed_in = SignedIn(claims, identity, tokens)
        if self.tenant.roles.require_role and not identity["roles"]:
            raise NoRoleAssigned(signed_in.user_key)
        return signed_in

    async def groups(self, claims: Mapping[str, Any], access_token: str | None) -> list[str]:
        """The user's groups: the token's, or Graph's on overage when the company allows the lookup."""
        if not has_group_overage(claims):
            return string_list(claims.get("groups"))
        if self.tenant.groups_overage != "graph" or not access_token:
            raise GroupsOverageRefused("group overage and groups_overage is deny")
        return await fetch_groups(self.http, self.tenant.graph_url, access_token)


def names_user(claims: Mapping[str, Any], session: Session) -> bool:
    """Whether verified claims name the session's user (``tid`` + ``oid``, compared case-insensitively)."""
    return (
        str(claims["tid"]).lower() == session.tid.lower()
        and str(claims["oid"]).lower() == session.oid.lower()
    )


def session_at_login(login_code: str, signed_in: SignedIn, csrf: str) -> Session:
    """The session for a login. Identity is ``tid`` + ``oid``; email and UPN are display only.

    The ID token itself is not kept: its claims are, and nothing reads it again (Entra's logout takes the
    ``login_hint`` claim), so it would only add 1.5 KB of token material to every record in Redis."""
    claims = signed_in.claims
    return Session(
        login_code=login_code,
        tid=str(claims["tid"]),
        oid=str(claims["oid"]),
        **signed_in.identity,
        sid=claims.get("sid") if isinstance(claims.get("sid"), str) else None,
        login_hint=claims.get("login_hint") if isinstance(claims.get("login_hint"), str) else None,
        refresh_token=signed_in.tokens.refresh_token,
        id_token_expires_at=float(claims["exp"]),
        csrf=csrf,
    )


def session_after_refresh(
    session: Session, signed_in: SignedIn, used_refresh_token: str, now: float
) -> Session:
    """The session a refresh leaves: the identity recomputed from the new token (a role removed in Entra
    disappears), the user key, ``sid``, CSRF token and timestamps of the login kept."""
    return replace(
        session,
        **signed_in.identity,
        # Entra rotates refresh tokens: keep the new one (the old one may stop working at any time).
        refresh_token=signed_in.tokens.refresh_token or used_refresh_token,
        id_token_expires_at=float(signed_in.claims["exp"]),
        refreshed_at=now,
        refresh_failed_at=0.0,
    )

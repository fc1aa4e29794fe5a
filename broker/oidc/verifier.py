"""Validate an ID token with the company's tenant keys, refetching them once for an unknown ``kid``."""

from __future__ import annotations

from typing import Any

from broker.config.schema import TenantConfig
from broker.oidc.discovery import DiscoveryCache, ProviderMetadata
from broker.oidc.tokens import Expectations, UnknownSigningKey, validate_id_token


async def verify_id_token(
    discovery: DiscoveryCache,
    tenant: TenantConfig,
    metadata: ProviderMetadata,
    token: str,
    *,
    nonce: str,
    now: float,
) -> dict[str, Any]:
    """The token's claims if every rule holds; ``InvalidToken`` naming the rule otherwise."""
    expect = Expectations(
        issuer=metadata.issuer,
        client_id=tenant.client_id,
        tenant_id=_tenant_guid(metadata, tenant),
        nonce=nonce,
        clock_skew=tenant.clock_skew,
    )
    keys = await discovery.keys(tenant.authority, tenant.tenant_id)
    try:
        return validate_id_token(token, keys, expect, now)
    except UnknownSigningKey:
        # Keys roll over (ENTRA.md): refetch once, rate-limited inside the cache, then decide.
        keys = await discovery.keys(tenant.authority, tenant.tenant_id, unknown_kid=True)
        return validate_id_token(token, keys, expect, now)


def _tenant_guid(metadata: ProviderMetadata, tenant: TenantConfig) -> str:
    """The tenant GUID a token must carry in ``tid``.

    ``tenant_id`` may be a verified domain; the issuer of a tenant-specific discovery document always
    holds the GUID (``{authority}/{guid}/v2.0``), so take it from there.
    """
    parts = metadata.issuer.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 and parts[-1] == "v2.0" else tenant.tenant_id

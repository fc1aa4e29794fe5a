"""Validate an ID token with the company's tenant keys, refetching them once for an unknown ``kid``."""

from __future__ import annotations

from typing import Any

from broker.config.schema import MULTI_TENANT_IDS, TenantConfig
from broker.oidc.discovery import DiscoveryCache, ProviderMetadata, Source
from broker.oidc.tokens import TENANT_PLACEHOLDER, Expectations, UnknownSigningKey, validate_id_token


def source_of(tenant: TenantConfig) -> Source:
    """Where a company's metadata and keys come from (app-specific keys when configured)."""
    return Source(tenant.authority, tenant.tenant_id, tenant.client_id if tenant.app_specific_keys else None)


def allowed_tenants(metadata: ProviderMetadata, tenant: TenantConfig) -> frozenset[str]:
    """The ``tid`` values a token may carry for this company.

    Multi-tenant apps: the operator's allow-list. Otherwise exactly the tenant's GUID: ``tenant_id`` may be
    a verified domain, but the issuer of a tenant-specific discovery document always holds the GUID.
    """
    if tenant.tenant_id.lower() in MULTI_TENANT_IDS:
        return frozenset(t.lower() for t in tenant.allowed_tenants)
    parts = metadata.issuer.rstrip("/").split("/")
    guid = parts[-2] if len(parts) >= 2 and parts[-1] == "v2.0" else tenant.tenant_id
    if guid == TENANT_PLACEHOLDER:
        return frozenset()  # a template issuer for a single-tenant company: admit nobody (fail closed)
    return frozenset({guid.lower()})


async def verify_id_token(
    discovery: DiscoveryCache,
    tenant: TenantConfig,
    metadata: ProviderMetadata,
    token: str,
    *,
    nonce: str | None,
    now: float,
) -> dict[str, Any]:
    """The token's claims if every rule holds; ``InvalidToken`` naming the rule otherwise."""
    expect = Expectations(
        issuer=metadata.issuer,
        client_id=tenant.client_id,
        allowed_tenants=allowed_tenants(metadata, tenant),
        nonce=nonce,
        clock_skew=tenant.clock_skew,
    )
    source = source_of(tenant)
    keys = await discovery.keys(source)
    try:
        return validate_id_token(token, keys, expect, now)
    except UnknownSigningKey:
        # Keys roll over (ENTRA.md): refetch once, rate-limited inside the cache, then decide.
        keys = await discovery.keys(source, unknown_kid=True)
        return validate_id_token(token, keys, expect, now)

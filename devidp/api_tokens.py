"""Access tokens for an API registered in the dev IdP (``DevClient.api``), as Entra issues them.

- delegated: a sign-in that asks for ``{App ID URI}/{scope}`` gets an access token for that API with
  ``scp`` (instead of one for Graph);
- app-only: the ``client_credentials`` grant with ``scope={App ID URI}/.default`` gets a token with the
  app roles the API granted the calling application, ``idtyp=app`` and no ``scp``.

``accessTokenAcceptedVersion`` chooses the shape: v1 (``iss`` ``https://sts.windows.net/{tid}/``, ``aud`` the
App ID URI, ``appid``) or v2 (``iss`` the tenant's v2 issuer, ``aud`` the app ID, ``azp``).
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from devidp.model import DevApi, DevClient, DevTenant, DevUser

V1_ISSUER = "https://sts.windows.net/{tid}/"
DEFAULT_SUFFIX = "/.default"
TOKEN_LIFETIME = 3600


def find_api(tenant: DevTenant, scope: str) -> tuple[DevClient, str] | None:
    """The API app a scope names (``api://wiki/Wiki.Read`` or ``{app id}/.default``) and the scope's
    last part, or None when no app of the tenant exposes it."""
    for client in tenant.clients:
        if client.api is None:
            continue
        for prefix in (client.api.app_id_uri, client.client_id):
            if scope.startswith(prefix + "/"):
                return client, scope[len(prefix) + 1 :]
    return None


def service_principal_oid(tenant_id: str, client_id: str) -> str:
    """The calling application's service principal object ID in the tenant (stable per app and tenant)."""
    return str(uuid.uuid5(uuid.UUID(tenant_id), client_id))


def _base(
    api_client: DevClient, api: DevApi, tenant: DevTenant, issuer_v2: str, now: float
) -> dict[str, Any]:
    iat = int(now)
    v1 = api.access_token_version == 1
    return {
        "aud": api.app_id_uri if v1 else api_client.client_id,
        "iss": V1_ISSUER.format(tid=tenant.tenant_id) if v1 else issuer_v2,
        "iat": iat,
        "nbf": iat,
        "exp": iat + TOKEN_LIFETIME,
        "tid": tenant.tenant_id,
        "uti": secrets.token_urlsafe(16),
        "ver": "1.0" if v1 else "2.0",
    }


def _caller(claims: dict[str, Any], api: DevApi, client_id: str) -> None:
    claims["appid" if api.access_token_version == 1 else "azp"] = client_id


def delegated_claims(
    api_client: DevClient,
    tenant: DevTenant,
    issuer_v2: str,
    client_id: str,
    user: DevUser,
    scopes: list[str],
    now: float,
) -> dict[str, Any]:
    """A user's token for the API: ``scp`` holds the API's scopes the sign-in asked for."""
    assert api_client.api is not None
    claims = _base(api_client, api_client.api, tenant, issuer_v2, now)
    _caller(claims, api_client.api, client_id)
    claims.update(
        oid=user.oid,
        sub=user.oid,
        name=user.name,
        preferred_username=user.username,
        scp=" ".join(s for s in scopes if s in api_client.api.scopes),
        idtyp="user",
    )
    if user.roles:
        claims["roles"] = list(user.roles)
    return claims


def app_only_claims(
    api_client: DevClient, tenant: DevTenant, issuer_v2: str, client_id: str, now: float
) -> dict[str, Any]:
    """An application's token for the API: the app roles granted to ``client_id``, no ``scp``."""
    assert api_client.api is not None
    claims = _base(api_client, api_client.api, tenant, issuer_v2, now)
    _caller(claims, api_client.api, client_id)
    oid = service_principal_oid(tenant.tenant_id, client_id)
    claims.update(oid=oid, sub=oid, idtyp="app", roles=list(api_client.api.app_roles.get(client_id, [])))
    return claims

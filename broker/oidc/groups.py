"""Group overage (ENTRA.md): over 200 groups, Entra leaves ``groups`` out of the ID token and points at
Microsoft Graph instead. Treating such a user as having no groups is a known trap, so each company
chooses: ``deny`` (a clear page) or ``graph`` (ask Graph with the user's access token).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from broker.errors import GroupsOverageError, IdentityProviderUnavailable

log = logging.getLogger(__name__)

GRAPH_TIMEOUT = aiohttp.ClientTimeout(total=10)


def has_group_overage(claims: Mapping[str, Any]) -> bool:
    """Whether the token says "too many groups, ask Graph" instead of listing them."""
    names = claims.get("_claim_names")
    return "groups" not in claims and isinstance(names, dict) and "groups" in names


async def fetch_groups(http: aiohttp.ClientSession, graph_url: str, access_token: str) -> list[str]:
    """The signed-in user's group object IDs (transitive) from ``POST /v1.0/me/getMemberObjects``."""
    url = f"{graph_url.rstrip('/')}/v1.0/me/getMemberObjects"
    headers = {"Authorization": f"Bearer {access_token}"}
    try:
        # Never follow a redirect: it would carry the user's access token to wherever the answer points.
        async with http.post(
            url,
            json={"securityEnabledOnly": False},
            headers=headers,
            timeout=GRAPH_TIMEOUT,
            allow_redirects=False,
        ) as resp:
            if 300 <= resp.status < 400:
                log.warning("Microsoft Graph answered a redirect (HTTP %d); not followed", resp.status)
                raise IdentityProviderUnavailable(f"Microsoft Graph answered a redirect (HTTP {resp.status})")
            if resp.status >= 500:
                raise IdentityProviderUnavailable(f"Microsoft Graph answered HTTP {resp.status}")
            if resp.status != 200:
                raise GroupsOverageError(f"Microsoft Graph refused the request (HTTP {resp.status})")
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise IdentityProviderUnavailable(f"Microsoft Graph unreachable: {type(exc).__name__}") from exc
    except ValueError as exc:
        raise GroupsOverageError("Microsoft Graph answered with invalid JSON") from exc
    if not isinstance(body, dict) or not isinstance(body.get("value"), list):
        raise GroupsOverageError("Microsoft Graph answered without a list of groups")
    return [g for g in body["value"] if isinstance(g, str)]

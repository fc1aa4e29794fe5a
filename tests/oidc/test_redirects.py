"""Every call the broker makes to the identity provider refuses to follow a redirect (issue 13, 6).

A provider (or whoever answers in its name) replies ``307`` to another origin. Followed, a 307 resends the
same request, body and credentials included: the client secret and the authorization code, or the user's
access token for Graph. Two real servers on loopback: the "provider" that redirects, and the other origin,
which records every request that reaches it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from broker.config.schema import TenantConfig
from broker.errors import IdentityProviderUnavailable
from broker.oidc.client import redeem_code
from broker.oidc.credentials import SecretCredential
from broker.oidc.discovery import DiscoveryCache, ProviderMetadata, Source
from broker.oidc.groups import fetch_groups
from tests.support.servers import serve

TID = "3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c"
CLIENT = "6a4f3e2d-1c0b-4a9f-8e7d-6c5b4a3f2e1d"
SECRET = "the-client-secret-value"
CODE = "the-authorization-code"
ACCESS_TOKEN = "the-users-access-token"


@dataclass
class Servers:
    """The redirecting provider's base URL and what the other origin received."""

    provider: str
    elsewhere: str
    received: list[str] = field(default_factory=list)


def url_of(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}"


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    received: list[str] = []

    async def record(request: web.Request) -> web.Response:
        received.append(f"{request.method} {request.path_qs} {request.headers.get('Authorization', '')} ")
        received[-1] += (await request.read()).decode()
        # Whatever a follower would need to succeed: discovery, keys, tokens or groups.
        return web.json_response({"keys": [], "value": [], "id_token": "x", "issuer": "x"})

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", record)
    other_runner = await serve(other)
    elsewhere = url_of(other_runner)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"{elsewhere}{request.path_qs}")

    async def discovery(request: web.Request) -> web.Response:
        if "appid" in request.query:  # this "app" has its discovery document redirected
            raise web.HTTPTemporaryRedirect(f"{elsewhere}{request.path_qs}")
        return discovery_pointing_at_keys(request)

    provider = web.Application()
    provider.router.add_get(f"/{TID}/v2.0/.well-known/openid-configuration", discovery)
    provider.router.add_route("*", "/{tail:.*}", redirect)
    provider_runner = await serve(provider)
    yield Servers(url_of(provider_runner), elsewhere, received)
    await provider_runner.cleanup()
    await other_runner.cleanup()


def discovery_pointing_at_keys(request: web.Request) -> web.Response:
    """A correct discovery document whose ``jwks_uri`` (on the same provider) redirects."""
    base = f"http://{request.host}"
    return web.json_response(
        {
            "issuer": f"{base}/{TID}/v2.0",
            "authorization_endpoint": f"{base}/{TID}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/{TID}/oauth2/v2.0/token",
            "jwks_uri": f"{base}/{TID}/discovery/v2.0/keys",
        }
    )


def metadata(base: str) -> ProviderMetadata:
    return ProviderMetadata(
        issuer=f"{base}/{TID}/v2.0",
        authorization_endpoint=f"{base}/{TID}/oauth2/v2.0/authorize",
        token_endpoint=f"{base}/{TID}/oauth2/v2.0/token",
        jwks_uri=f"{base}/{TID}/discovery/v2.0/keys",
        end_session_endpoint=None,
    )


async def test_a_307_from_the_token_endpoint_does_not_resend_the_secret_and_code(servers: Servers) -> None:
    tenant = TenantConfig(display_name="Contoso", tenant_id=TID, client_id=CLIENT, authority=servers.provider)
    for method in ("post", "basic"):
        async with aiohttp.ClientSession() as http:
            with pytest.raises(IdentityProviderUnavailable, match="redirect"):
                await redeem_code(
                    http,
                    metadata(servers.provider),
                    tenant,
                    SecretCredential(CLIENT, SECRET, method),
                    code=CODE,
                    redirect_uri="https://gw.example/.auth/callback",
                    code_verifier="v" * 64,
                    now=0.0,
                )
    assert servers.received == []  # neither the secret nor the code reached the other origin


async def test_a_redirected_discovery_document_is_not_followed(servers: Servers) -> None:
    async with aiohttp.ClientSession() as http:
        cache = DiscoveryCache(http)
        with pytest.raises(IdentityProviderUnavailable, match="redirect"):
            await cache.metadata(Source(servers.provider, TID, "redirect"))
    assert servers.received == []


async def test_a_redirected_jwks_is_not_followed(servers: Servers) -> None:
    async with aiohttp.ClientSession() as http:
        cache = DiscoveryCache(http)
        with pytest.raises(IdentityProviderUnavailable, match="redirect"):
            await cache.keys(Source(servers.provider, TID))
    assert servers.received == []


async def test_a_redirect_from_graph_does_not_resend_the_access_token(servers: Servers) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(IdentityProviderUnavailable, match="redirect"):
            await fetch_groups(http, servers.provider, ACCESS_TOKEN)
    assert servers.received == []

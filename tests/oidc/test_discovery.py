"""The per-tenant metadata and key cache, against a real HTTP server that counts fetches.

Rules (ENTRA.md): 24 h TTL; refetch on an unknown kid at most once per 5 minutes; last good keys kept when a
fetch fails; app-specific keys (?appid=) cached on their own; background refresh renews old entries.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from broker.errors import IdentityProviderUnavailable
from broker.oidc.discovery import DiscoveryCache, Source
from tests.support.ports import HeldPort
from tests.support.servers import serve

TID = "3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c"


def jwk(kid: str) -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    data: dict[str, str] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**data, "kid": kid, "use": "sig"}


@dataclass
class FakeIdp:
    """Discovery + JWKS with counters and switches."""

    url: str
    kids: list[str] = field(default_factory=lambda: ["k1"])
    failing: bool = False
    issuer: str | None = None  # what discovery says; None: the tenant's correct v2.0 issuer
    discovery_hits: list[str] = field(default_factory=list)
    jwks_hits: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        keys = {kid: jwk(kid) for kid in ("k1", "k2", "k3", "app")}

        async def discovery(request: web.Request) -> web.Response:
            self.discovery_hits.append(request.query_string)
            if self.failing:
                return web.Response(status=503)
            suffix = f"?appid={request.query['appid']}" if "appid" in request.query else ""
            return web.json_response(
                {
                    "issuer": self.issuer or f"{self.url}/{TID}/v2.0",
                    "authorization_endpoint": f"{self.url}/{TID}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{self.url}/{TID}/oauth2/v2.0/token",
                    "jwks_uri": f"{self.url}/{TID}/discovery/v2.0/keys{suffix}",
                }
            )

        async def jwks(request: web.Request) -> web.Response:
            self.jwks_hits.append(request.query_string)
            if self.failing:
                return web.Response(status=500)
            kids = ["app"] if "appid" in request.query else self.kids
            return web.json_response({"keys": [keys[k] for k in kids]})

        for tenant in (TID, "organizations", "contoso.example"):
            app.router.add_get(f"/{tenant}/v2.0/.well-known/openid-configuration", discovery)
        app.router.add_get(f"/{TID}/discovery/v2.0/keys", jwks)
        return app


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def idp() -> AsyncIterator[FakeIdp]:
    with HeldPort() as port:  # the fake's URL is in what it serves: known before it starts
        fake = FakeIdp(port.url)
        runner = await serve(fake.app(), port)
        yield fake
        await runner.cleanup()


@pytest.fixture
async def cache_and_clock() -> AsyncIterator[tuple[DiscoveryCache, Clock]]:
    clock = Clock()
    async with aiohttp.ClientSession() as http:
        yield DiscoveryCache(http, clock), clock


async def test_cached_for_24_hours(idp: FakeIdp, cache_and_clock: tuple[DiscoveryCache, Clock]) -> None:
    cache, clock = cache_and_clock
    source = Source(idp.url, TID)
    assert set(await cache.keys(source)) == {"k1"}
    clock.now += 23.9 * 3600
    await cache.keys(source)
    await cache.metadata(source)
    assert (len(idp.discovery_hits), len(idp.jwks_hits)) == (1, 1)
    clock.now += 0.2 * 3600
    await cache.keys(source)
    assert (len(idp.discovery_hits), len(idp.jwks_hits)) == (2, 2)


async def test_unknown_kid_refetches_at_most_every_five_minutes(
    idp: FakeIdp, cache_and_clock: tuple[DiscoveryCache, Clock]
) -> None:
    cache, clock = cache_and_clock
    source = Source(idp.url, TID)
    await cache.keys(source)
    idp.kids = ["k1", "k2"]  # Entra rolled a key
    assert "k2" in await cache.keys(source, unknown_kid=True)
    assert len(idp.jwks_hits) == 2
    idp.kids = ["k1", "k2", "k3"]
    clock.now += 299
    assert "k3" not in await cache.keys(source, unknown_kid=True)  # rate-limited: no fetch
    assert len(idp.jwks_hits) == 2
    clock.now += 2
    assert "k3" in await cache.keys(source, unknown_kid=True)
    assert len(idp.jwks_hits) == 3


async def test_last_good_keys_kept_when_fetch_fails(
    idp: FakeIdp, cache_and_clock: tuple[DiscoveryCache, Clock]
) -> None:
    cache, clock = cache_and_clock
    source = Source(idp.url, TID)
    await cache.keys(source)
    idp.failing = True
    clock.now += 25 * 3600
    assert set(await cache.keys(source)) == {"k1"}
    assert set(await cache.keys(source, unknown_kid=True)) == {"k1"}


async def test_no_keys_and_idp_down_is_unavailable(
    idp: FakeIdp, cache_and_clock: tuple[DiscoveryCache, Clock]
) -> None:
    cache, _ = cache_and_clock
    idp.failing = True
    with pytest.raises(IdentityProviderUnavailable):
        await cache.keys(Source(idp.url, TID))


async def test_app_specific_keys_are_fetched_and_cached_apart(
    idp: FakeIdp, cache_and_clock: tuple[DiscoveryCache, Clock]
) -> None:
    cache, _ = cache_and_clock
    assert set(await cache.keys(Source(idp.url, TID, "my-app"))) == {"app"}
    assert set(await cache.keys(Source(idp.url, TID))) == {"k1"}
    assert idp.discovery_hits == ["appid=my-app", ""]
    assert idp.jwks_hits == ["appid=my-app", ""]


async def test_background_refresh_renews_old_entries_only(
    idp: FakeIdp, cache_and_clock: tuple[DiscoveryCache, Clock]
) -> None:
    cache, clock = cache_and_clock
    source = Source(idp.url, TID)
    await cache.refresh([source], max_age=0.0)
    assert len(idp.jwks_hits) == 1
    clock.now += 3600
    await cache.refresh([source])  # young: left alone
    assert len(idp.jwks_hits) == 1
    clock.now += 22 * 3600
    await cache.refresh([source])  # older than the background age: renewed before requests see it stale
    assert len(idp.jwks_hits) == 2
    idp.failing = True
    clock.now += 23 * 3600
    await cache.refresh([source])  # failure is logged, not raised
    assert set(await cache.keys(source)) == {"k1"}


OTHER_TID = "8b7c6d5e-4f3a-4b2c-9d1e-0f9a8b7c6d5e"


@pytest.mark.parametrize(
    ("tenant", "issuer"),
    [
        (TID, "{url}/" + OTHER_TID + "/v2.0"),  # another tenant's document: it would admit that tid
        (TID, "{url}/{{tenantid}}/v2.0"),  # the multi-tenant template for a single-tenant company
        (TID, "https://evil.example/" + TID + "/v2.0"),  # right tenant, another authority
        ("organizations", "{url}/" + OTHER_TID + "/v2.0"),  # a tenant's issuer for a multi-tenant app
        ("contoso.example", "{url}/{{tenantid}}/v2.0"),  # a domain tenant must resolve to one GUID
        ("contoso.example", "https://evil.example/" + OTHER_TID + "/v2.0"),
    ],
)
async def test_a_discovery_document_with_another_issuer_is_refused_and_not_cached(
    idp: FakeIdp, cache_and_clock: tuple[DiscoveryCache, Clock], tenant: str, issuer: str
) -> None:
    cache, _ = cache_and_clock
    idp.issuer = issuer.format(url=idp.url)
    with pytest.raises(IdentityProviderUnavailable, match="issuer"):
        await cache.metadata(Source(idp.url, tenant))
    assert not cache.is_loaded(Source(idp.url, tenant))


@pytest.mark.parametrize(
    ("tenant", "issuer"),
    [
        (TID, "{url}/" + TID + "/v2.0"),
        ("organizations", "{url}/{{tenantid}}/v2.0"),
        ("contoso.example", "{url}/" + OTHER_TID + "/v2.0"),
    ],
)
async def test_the_configured_tenants_issuer_is_accepted(
    idp: FakeIdp, cache_and_clock: tuple[DiscoveryCache, Clock], tenant: str, issuer: str
) -> None:
    cache, _ = cache_and_clock
    idp.issuer = issuer.format(url=idp.url)
    assert (await cache.metadata(Source(idp.url, tenant))).issuer == idp.issuer


async def test_a_wrong_document_later_does_not_replace_the_good_one(
    idp: FakeIdp, cache_and_clock: tuple[DiscoveryCache, Clock]
) -> None:
    cache, clock = cache_and_clock
    source = Source(idp.url, TID)
    good = await cache.metadata(source)
    idp.issuer = f"{idp.url}/{OTHER_TID}/v2.0"
    clock.now += 25 * 3600
    assert await cache.metadata(source) == good

"""Per-tenant OpenID metadata and signing keys, cached as ENTRA.md's key-rollover rules ask.

- metadata and JWKS are kept 24 h, then refetched;
- a token naming an unknown ``kid`` triggers one refetch, at most once per 5 minutes per tenant
  (so a flood of forged kids cannot turn us into a load generator against the IdP);
- when a fetch fails, the last good metadata/keys stay in use; without any, the IdP is "unavailable";
- a background task (``refresh_forever``) renews entries before they age out, so requests rarely wait;
  sources that have never loaded (the IdP was down at start) are retried with backoff, 1 s doubling to
  60 s with jitter, so readiness recovers within about a minute of the IdP coming back;
- the document's ``issuer`` must be the configured tenant's v2.0 issuer under the configured authority (the
  ``{tenantid}`` template for ``organizations``/``common``); any other document is refused, not cached,
  because the issuer decides which ``tid`` is admitted;
- no fetch follows a redirect (a 3xx is the provider misbehaving);
- apps with claims mapping use app-specific keys: ``?appid={client_id}`` on discovery (whose ``jwks_uri``
  then carries it too), cached separately per app.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt

from broker.config.schema import MULTI_TENANT_IDS
from broker.errors import IdentityProviderUnavailable, InvalidToken
from broker.oidc.tokens import check_signing_jwk
from broker.ops.tracing import span

log = logging.getLogger(__name__)

CACHE_TTL = 24 * 3600.0
UNKNOWN_KID_REFETCH_INTERVAL = 300.0
BACKGROUND_REFRESH_INTERVAL = 3600.0
# Renew in the background once an entry is older than this, well before requests would find it stale.
BACKGROUND_REFRESH_AGE = CACHE_TTL - 2 * BACKGROUND_REFRESH_INTERVAL
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=10)
RETRY_FIRST_DELAY = 1.0
RETRY_MAX_DELAY = 60.0


def retry_delay(attempt: int, jitter: Callable[[], float] = random.random) -> float:
    """Seconds before retry ``attempt`` (0-based): 1 s doubling to 60 s, minus up to half (jitter), so
    replicas started together do not retry in step."""
    base = min(RETRY_MAX_DELAY, RETRY_FIRST_DELAY * 2.0 ** min(attempt, 16))
    return base * (1.0 - 0.5 * jitter())


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of the discovery document the broker uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None


@dataclass
class _TenantCache:
    metadata: ProviderMetadata | None = None
    metadata_at: float = 0.0
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    keys_at: float = 0.0
    last_kid_refetch: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def discovery_url(authority: str, tenant_id: str, appid: str | None = None) -> str:
    """``{authority}/{tenant}/v2.0/.well-known/openid-configuration[?appid=…]`` (never a hard-coded host)."""
    url = f"{authority.rstrip('/')}/{tenant_id}/v2.0/.well-known/openid-configuration"
    return f"{url}?appid={appid}" if appid else url


@dataclass(frozen=True)
class Source:
    """Where one tenant's (or one app's) metadata and keys come from."""

    authority: str
    tenant_id: str
    appid: str | None = None


def parse_metadata(doc: Any) -> ProviderMetadata:
    """Pick the endpoints out of a discovery document; reject documents missing the essentials."""
    if not isinstance(doc, dict):
        raise ValueError("discovery document is not a JSON object")
    for name in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(doc.get(name), str):
            raise ValueError(f"discovery document has no {name}")
    end_session = doc.get("end_session_endpoint")
    return ProviderMetadata(
        issuer=doc["issuer"],
        authorization_endpoint=doc["authorization_endpoint"],
        token_endpoint=doc["token_endpoint"],
        jwks_uri=doc["jwks_uri"],
        end_session_endpoint=end_session if isinstance(end_session, str) else None,
    )


_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TENANT_TEMPLATE = "{tenantid}"


def check_issuer_of_document(issuer: str, source: Source) -> None:
    """The discovery ``issuer`` is the configured tenant's (ENTRA.md); ``ValueError`` otherwise.

    GUID tenant: exactly ``{authority}/{tenant}/v2.0``. Multi-tenant (``organizations``/``common``): the
    literal template ``{authority}/{tenantid}/v2.0``. A verified-domain tenant: ``{authority}/{GUID}/v2.0``
    (only the provider knows which GUID the domain belongs to; the tokens' ``tid`` is then pinned to it).
    """
    prefix = f"{source.authority.rstrip('/')}/"
    tenant = source.tenant_id.lower()
    if tenant in MULTI_TENANT_IDS:
        fits = issuer == f"{prefix}{TENANT_TEMPLATE}/v2.0"
    elif _GUID.match(tenant):
        fits = issuer.lower() == f"{prefix}{tenant}/v2.0".lower()
    else:
        middle = issuer[len(prefix) : -len("/v2.0")] if issuer.endswith("/v2.0") else ""
        fits = issuer.startswith(prefix) and bool(_GUID.match(middle))
    if not fits:
        raise ValueError(f"discovery document's issuer {issuer!r} is not tenant {source.tenant_id}'s")


def parse_jwks(doc: Any) -> dict[str, jwt.PyJWK]:
    """RSA signature keys by ``kid``; keys we cannot use are skipped, not fatal."""
    keys: dict[str, jwt.PyJWK] = {}
    for jwk in doc.get("keys", []) if isinstance(doc, dict) else []:
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA" or not isinstance(jwk.get("kid"), str):
            continue
        try:
            # The key's own use/key_ops/alg decide whether it may verify our tokens (RFC 7517 4.2-4.4).
            check_signing_jwk(jwk)
        except InvalidToken as exc:
            log.warning("skipping JWKS key not meant for our signatures: %s", exc, extra={"kid": jwk["kid"]})
            continue
        try:
            keys[jwk["kid"]] = jwt.PyJWK.from_dict(jwk, algorithm="RS256")
        except jwt.PyJWTError:
            log.warning("skipping unusable JWKS key", extra={"kid": jwk["kid"]})
    return keys


class DiscoveryCache:
    """Fetches and caches discovery documents and JWKS for every (authority, tenant)."""

    def __init__(self, http: aiohttp.ClientSession, clock: Callable[[], float] = time.monotonic) -> None:
        self._http = http
        self._clock = clock
        self._tenants: dict[Source, _TenantCache] = {}

    def _cache(self, source: Source) -> _TenantCache:
        return self._tenants.setdefault(source, _TenantCache())

    async def _get_json(self, url: str) -> Any:
        try:
            # Never follow a redirect: the configured authority, not the answer, decides where keys come from.
            async with self._http.get(url, timeout=FETCH_TIMEOUT, allow_redirects=False) as resp:
                if 300 <= resp.status < 400:
                    log.warning("identity provider answered a redirect; not followed", extra={"url": url})
                    raise IdentityProviderUnavailable(f"{url} answered a redirect (HTTP {resp.status})")
                if resp.status != 200:
                    raise IdentityProviderUnavailable(f"{url} answered HTTP {resp.status}")
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise IdentityProviderUnavailable(f"cannot fetch {url}: {type(exc).__name__}") from exc

    async def metadata(self, source: Source, *, max_age: float = CACHE_TTL) -> ProviderMetadata:
        """The discovery document, from cache when younger than ``max_age``."""
        cache = self._cache(source)
        if cache.metadata is not None and self._clock() - cache.metadata_at < max_age:
            return cache.metadata
        async with cache.lock:
            if cache.metadata is not None and self._clock() - cache.metadata_at < max_age:
                return cache.metadata
            url = discovery_url(source.authority, source.tenant_id, source.appid)
            try:
                fetched = parse_metadata(await self._get_json(url))
                check_issuer_of_document(fetched.issuer, source)
                cache.metadata, cache.metadata_at = fetched, self._clock()
            except (IdentityProviderUnavailable, ValueError) as exc:
                if cache.metadata is None:
                    raise IdentityProviderUnavailable(str(exc)) from exc
                log.warning("discovery refresh failed; keeping last good", extra={"tenant": source.tenant_id})
            return cache.metadata

    async def keys(
        self, source: Source, *, unknown_kid: bool = False, max_age: float = CACHE_TTL
    ) -> dict[str, jwt.PyJWK]:
        """The signing keys; ``unknown_kid`` asks for a refetch, at most once per 5 minutes."""
        cache = self._cache(source)
        async with cache.lock:
            now = self._clock()
            stale = not cache.keys or now - cache.keys_at >= max_age
            kid_refetch = unknown_kid and now - cache.last_kid_refetch >= UNKNOWN_KID_REFETCH_INTERVAL
            if not (stale or kid_refetch):
                return cache.keys
            if kid_refetch:
                cache.last_kid_refetch = now
        metadata = await self.metadata(source, max_age=max_age)
        async with cache.lock:
            try:
                with span("oidc.jwks_fetch"):
                    fetched = parse_jwks(await self._get_json(metadata.jwks_uri))
                if not fetched:
                    raise IdentityProviderUnavailable("JWKS has no usable RS256 keys")
                cache.keys, cache.keys_at = fetched, self._clock()
            except IdentityProviderUnavailable:
                if not cache.keys:
                    raise
                log.warning("JWKS refresh failed; keeping last good keys", extra={"tenant": source.tenant_id})
            return cache.keys

    def is_loaded(self, source: Source) -> bool:
        """Whether metadata and keys for ``source`` are cached (fresh or last good)."""
        cache = self._tenants.get(source)
        return cache is not None and cache.metadata is not None and bool(cache.keys)

    async def refresh(self, sources: list[Source], max_age: float = BACKGROUND_REFRESH_AGE) -> None:
        """Renew every source older than ``max_age``; failures are logged, last good values kept."""
        for source in sources:
            try:
                await self.keys(source, max_age=max_age)
            except IdentityProviderUnavailable as exc:
                log.warning("background key refresh failed: %s", exc, extra={"tenant": source.tenant_id})

    async def refresh_forever(
        self, sources: list[Source], interval: float = BACKGROUND_REFRESH_INTERVAL
    ) -> None:
        """Warm every company's metadata and keys at start-up, then keep them fresh (a background task).

        Sources still without keys (their IdP was unreachable) are retried with backoff (``retry_delay``)
        rather than after ``interval``: a gateway started during an outage becomes ready soon after.
        """
        await self.refresh(sources, max_age=0.0)
        attempt = 0
        while True:
            missing = [source for source in sources if not self.is_loaded(source)]
            if not missing:
                attempt = 0
                await asyncio.sleep(interval)
                await self.refresh(sources)
                continue
            delay = retry_delay(attempt)
            attempt += 1
            log.warning(
                "identity provider keys not loaded for %d tenant(s); retrying in %.1f s",
                len(missing),
                delay,
                extra={"tenants": sorted({source.tenant_id for source in missing})},
            )
            await asyncio.sleep(delay)
            await self.refresh(missing, max_age=0.0)

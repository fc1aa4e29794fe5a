"""The client side of the authorization-code flow with PKCE: build the authorize URL, redeem the code.

authlib supplies the protocol pieces (random tokens, S256 challenge, authorize URL encoding); the HTTP
goes through the broker's shared aiohttp session. Token-endpoint failures are translated here:
an OAuth error body -> ``IdentityProviderRejected`` (with AADSTS codes), anything else -> unavailable.
The client credential (secret or certificate) is applied by ``credentials.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from broker.config.schema import TenantConfig
from broker.errors import IdentityProviderRejected, IdentityProviderUnavailable
from broker.oidc.credentials import ClientCredential
from broker.oidc.discovery import ProviderMetadata
from broker.ops.tracing import span

log = logging.getLogger(__name__)

TOKEN_TIMEOUT = aiohttp.ClientTimeout(total=15)
# RFC 7636 4.1: 43-128 characters; 64 gives 380 bits of entropy from authlib's generator.
CODE_VERIFIER_LENGTH = 64
NONCE_LENGTH = 32


@dataclass(frozen=True)
class PkcePair:
    """A PKCE verifier (kept server-side) and its S256 challenge (sent to Entra)."""

    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> PkcePair:
        """A fresh random verifier."""
        verifier = generate_token(CODE_VERIFIER_LENGTH)
        return cls(verifier, create_s256_code_challenge(verifier))


def new_nonce() -> str:
    """A random nonce binding the ID token to this sign-in."""
    return str(generate_token(NONCE_LENGTH))


@dataclass(frozen=True)
class TokenResponse:
    """What the token endpoint returned, reduced to what the broker keeps."""

    id_token: str
    refresh_token: str | None
    access_token: str | None
    expires_in: int | None


def authorize_url(
    metadata: ProviderMetadata,
    tenant: TenantConfig,
    *,
    redirect_uri: str,
    state: str,
    nonce: str,
    code_challenge: str,
    extra: dict[str, str] | None = None,
) -> str:
    """The URL that sends the browser to the tenant's sign-in."""
    params: dict[str, str] = {
        "nonce": nonce,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
        "response_mode": tenant.response_mode,
    }
    if tenant.domain_hint:
        params["domain_hint"] = tenant.domain_hint
    if tenant.prompt:
        params["prompt"] = tenant.prompt
    params.update(extra or {})
    url: str = prepare_grant_uri(
        metadata.authorization_endpoint,
        tenant.client_id,
        "code",
        redirect_uri=redirect_uri,
        scope=" ".join(tenant.scopes),
        state=state,
        **params,
    )
    return url


def parse_oauth_error(body: Any) -> IdentityProviderRejected | None:
    """An Entra/OAuth error body as ``IdentityProviderRejected``; None when it is not one."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return None
    codes = body.get("error_codes")
    error_codes = tuple(c for c in codes if isinstance(c, int)) if isinstance(codes, list) else ()
    return IdentityProviderRejected(
        body["error"],
        str(body.get("error_description", "")),
        error_codes,
        str(body.get("correlation_id", "")),
    )


async def _token_request(
    http: aiohttp.ClientSession,
    metadata: ProviderMetadata,
    credential: ClientCredential,
    form: dict[str, str],
    now: float,
) -> TokenResponse:
    headers: dict[str, str] = {}
    form = dict(form)
    # The credential travels in the TLS-protected body or Authorization header, never in a URL or a log.
    credential.apply(form, headers, metadata.token_endpoint, now)
    try:
        # Never follow a redirect: a 307/308 would resend the client secret and the code to wherever the
        # answer points (RFC 9110 15.4.8), possibly another origin.
        async with http.post(
            metadata.token_endpoint, data=form, headers=headers, timeout=TOKEN_TIMEOUT, allow_redirects=False
        ) as resp:
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = None
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise IdentityProviderUnavailable(f"token endpoint unreachable: {type(exc).__name__}") from exc
    if 300 <= status < 400:
        log.warning("token endpoint answered a redirect (HTTP %d); not followed", status)
        raise IdentityProviderUnavailable(f"token endpoint answered a redirect (HTTP {status})")
    if status >= 500:
        raise IdentityProviderUnavailable(f"token endpoint answered HTTP {status}")
    if status != 200:
        rejected = parse_oauth_error(body)
        if rejected is None:
            raise IdentityProviderUnavailable(f"token endpoint answered HTTP {status} without an OAuth error")
        raise rejected
    if not isinstance(body, dict) or not isinstance(body.get("id_token"), str):
        raise IdentityProviderUnavailable("token endpoint answered without an id_token")
    refresh = body.get("refresh_token")
    access = body.get("access_token")
    expires_in = body.get("expires_in")
    return TokenResponse(
        id_token=body["id_token"],
        refresh_token=refresh if isinstance(refresh, str) else None,
        access_token=access if isinstance(access, str) else None,
        expires_in=int(expires_in)
        if isinstance(expires_in, int | str) and str(expires_in).isdigit()
        else None,
    )


async def redeem_code(
    http: aiohttp.ClientSession,
    metadata: ProviderMetadata,
    tenant: TenantConfig,
    credential: ClientCredential,
    *,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    now: float,
) -> TokenResponse:
    """Exchange an authorization code (with its PKCE verifier) for tokens."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
        "scope": " ".join(tenant.scopes),
    }
    with span("oidc.redeem_code"):
        return await _token_request(http, metadata, credential, form, now)


async def refresh_tokens(
    http: aiohttp.ClientSession,
    metadata: ProviderMetadata,
    tenant: TenantConfig,
    credential: ClientCredential,
    *,
    refresh_token: str,
    now: float,
) -> TokenResponse:
    """Redeem a refresh token; Entra answers with new tokens and a new (rotated) refresh token."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "scope": " ".join(tenant.scopes)}
    with span("oidc.refresh_tokens"):
        return await _token_request(http, metadata, credential, form, now)

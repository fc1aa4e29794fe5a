"""Entra access tokens on an API route, end to end: the dev IdP issues them (client credentials and the
normal login), the broker validates them, the demo backend gets the signed assertion.

Refusals are tokens signed with the dev IdP's real key (so only the named rule can refuse them), or broken
on purpose (``alg`` none, HS256, an unknown key). Each answer follows RFC 6750 and never says which check
failed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jwt
import pytest

from devidp import DevApi, DevClient, DevIdpConfig
from devidp.api_tokens import app_only_claims, delegated_claims, service_principal_oid
from devidp.context import DEVIDP, DevIdp
from devidp.tokens import sign_with
from tests.support.stack import (
    ADELE,
    CONTOSO_CLIENT,
    CONTOSO_SECRET,
    CONTOSO_TID,
    FABRIKAM_TID,
    Stack,
    devidp_config,
    running_stack,
)

SYNC_CLIENT = "5b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
SYNC_SECRET = "wiki-sync-test-secret"
NO_ROLE_CLIENT = "7c6b5a4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"
APP_ID_URI = "api://wiki"
API_ROUTE = {
    "host": "127.0.0.1",
    "path": "/api/",
    "upstream": "{backend_url}",
    "allow": {"login_codes": ["contoso"]},
    "api": {"audiences": [APP_ID_URI, CONTOSO_CLIENT], "scopes": ["Wiki.Read"], "app_roles": ["Wiki.Sync"]},
}


def api_directory(version: int = 2) -> DevIdpConfig:
    """The test directory plus "Expose an API" on contoso's app and two daemon apps (one granted a role)."""
    directory = devidp_config()
    contoso = directory.tenants[0]
    contoso.clients[0].api = DevApi(
        APP_ID_URI, ["Wiki.Read", "Wiki.Write"], version, {SYNC_CLIENT: ["Wiki.Sync"]}
    )
    contoso.clients += [DevClient(SYNC_CLIENT, SYNC_SECRET, []), DevClient(NO_ROLE_CLIENT, SYNC_SECRET, [])]
    return directory


@pytest.fixture
async def api_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """The whole product with an API route and a dev IdP that issues tokens for it."""
    async with running_stack(
        "memory", tmp_path, {}, idp_config=api_directory(), routes_extra=[API_ROUTE]
    ) as stack:
        yield stack


def idp_of(stack: Stack) -> DevIdp:
    """The running dev IdP's state (its keys sign the forged tokens: only the named rule can refuse them)."""
    assert stack.idp_runner is not None
    return stack.idp_runner.app[DEVIDP]


async def client_credentials(stack: Stack, client_id: str, scope: str = f"{APP_ID_URI}/.default") -> str:
    """An app-only token from the dev IdP, as a daemon gets one (``grant_type=client_credentials``)."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{stack.idp_url}/{CONTOSO_TID}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": SYNC_SECRET,
                "scope": scope,
            },
        ) as resp,
    ):
        body = await resp.json()
        assert resp.status == 200, body
        return str(body["access_token"])


async def call_api(
    stack: Stack, token: str, path: str = "/api/items"
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    """GET the API route with the token as a script does; (status, JSON body, headers)."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{stack.gateway_url}{path}",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        ) as resp,
    ):
        return resp.status, await resp.json(content_type=None), resp.headers


def assertion_claims(body: dict[str, Any]) -> dict[str, Any]:
    """The assertion the backend received (its signature the backend verified: ``assertion.valid``)."""
    assert body["assertion"]["valid"] is True, body["assertion"]
    token = body["headers"]["X-Broker-Assertion"]
    return dict(jwt.decode(token, options={"verify_signature": False}))


async def test_app_only_token_from_client_credentials_reaches_the_backend(api_stack: Stack) -> None:
    token = await client_credentials(api_stack, SYNC_CLIENT)
    status, body, headers = await call_api(api_stack, token)
    assert status == 200, body
    claims = assertion_claims(body)
    assert claims["sub"] == f"{CONTOSO_TID}:{service_principal_oid(CONTOSO_TID, SYNC_CLIENT)}"
    assert claims["azp"] == SYNC_CLIENT and claims["idtyp"] == "app" and claims["login_code"] == "contoso"
    # The token stays at the broker, and no session is created for a bearer call.
    assert "Authorization" not in body["headers"]
    assert "Set-Cookie" not in headers
    # A hot client: the second call is answered from the validated-token cache, same identity.
    status, again, _ = await call_api(api_stack, token)
    assert status == 200 and assertion_claims(again)["sub"] == claims["sub"]


async def test_delegated_token_from_the_normal_login_carries_the_user_and_scp(api_stack: Stack) -> None:
    stack = api_stack
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect_uri = "http://127.0.0.1/.auth/callback"
    query = {
        "client_id": CONTOSO_CLIENT,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "response_mode": "form_post",
        "scope": f"openid {APP_ID_URI}/Wiki.Read",
        "state": "s",
        "nonce": "n",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    async with stack.browser() as browser:
        async with browser.get(
            f"{stack.idp_url}/{CONTOSO_TID}/oauth2/v2.0/authorize?{urlencode(query)}"
        ) as resp:
            page = await resp.text()
            assert resp.status == 200, page
        form = await stack.pick_user(browser, page, ADELE.username)
        async with browser.post(
            f"{stack.idp_url}/{CONTOSO_TID}/oauth2/v2.0/token",
            data={
                "grant_type": "authorization_code",
                "code": form.fields["code"],
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
                "client_id": CONTOSO_CLIENT,
                "client_secret": CONTOSO_SECRET,
            },
        ) as resp:
            tokens = await resp.json()
            assert resp.status == 200, tokens
    status, body, _ = await call_api(stack, tokens["access_token"])
    assert status == 200, body
    claims = assertion_claims(body)
    assert claims["sub"] == f"{CONTOSO_TID}:{ADELE.oid}" and claims["scp"] == "Wiki.Read"
    assert claims["idtyp"] == "user" and claims["roles"] == ["admin"]  # Wiki.Admin mapped by contoso's rules


def good_delegated(idp: DevIdp, **changes: Any) -> dict[str, Any]:
    """Claims of a valid delegated v2 token for the API, with ``changes`` applied (None removes)."""
    tenant = idp.config.tenants[0]
    claims = delegated_claims(
        tenant.clients[0],
        tenant,
        idp.issuer(tenant),
        CONTOSO_CLIENT,
        tenant.users[0],
        ["Wiki.Read"],
        time.time(),
    )
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def unsigned(claims: dict[str, Any], alg: str = "none") -> str:
    """A token with ``alg`` none (no signature)."""
    part = lambda data: base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{part({'alg': alg, 'typ': 'JWT', 'kid': 'x'})}.{part(claims)}."


@pytest.mark.parametrize(
    "case",
    [
        "control",
        "wrong_aud",
        "other_tenant",
        "expired",
        "not_yet_valid",
        "wrong_iss",
        "graph",
        "graph_nonce_header",
        "alg_none",
        "hs256",
        "unknown_kid",
        "garbage",
    ],
)
async def test_invalid_tokens_get_rfc6750_invalid_token(api_stack: Stack, case: str) -> None:
    # R4: each token broken in one way only; the caller learns "invalid_token", the log has the rule.
    idp = idp_of(api_stack)
    key = idp.keys.current
    now = int(time.time())
    token = {
        "control": lambda: sign_with(key, good_delegated(idp)),
        "wrong_aud": lambda: sign_with(key, good_delegated(idp, aud="api://other")),
        "other_tenant": lambda: sign_with(
            key, good_delegated(idp, tid=FABRIKAM_TID, iss=f"{api_stack.idp_url}/{FABRIKAM_TID}/v2.0")
        ),
        "expired": lambda: sign_with(
            key, good_delegated(idp, iat=now - 7200, nbf=now - 7200, exp=now - 3600)
        ),
        "not_yet_valid": lambda: sign_with(key, good_delegated(idp, iat=now, nbf=now + 3600, exp=now + 7200)),
        "wrong_iss": lambda: sign_with(key, good_delegated(idp, iss="https://evil.example/v2.0")),
        "graph": lambda: sign_with(key, good_delegated(idp, aud="00000003-0000-0000-c000-000000000000")),
        # Graph's tokens carry a nonce in the header (Graph hashes it before checking the signature).
        "graph_nonce_header": lambda: jwt.encode(
            good_delegated(idp), key.private_key, algorithm="RS256", headers={"kid": key.kid, "nonce": "n"}
        ),
        "alg_none": lambda: unsigned(good_delegated(idp)),
        "hs256": lambda: jwt.encode(
            good_delegated(idp), "k" * 32, algorithm="HS256", headers={"kid": key.kid}
        ),
        "unknown_kid": lambda: jwt.encode(
            good_delegated(idp), key.private_key, algorithm="RS256", headers={"kid": "not-published"}
        ),
        "garbage": lambda: "not-a-jwt",
    }[case]()
    status, body, headers = await call_api(api_stack, token)
    if case == "control":
        assert status == 200, body
        return
    assert status == 401, (case, body)
    assert body["error"] == "invalid_token" and "assertion" not in body
    challenge = headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge


async def test_missing_scope_or_role_is_insufficient_scope(api_stack: Stack) -> None:
    # R5: a valid token without the API's scope (delegated) or app role (app-only): 403 insufficient_scope.
    idp = idp_of(api_stack)
    token = sign_with(idp.keys.current, good_delegated(idp, scp="Wiki.Write"))
    status, body, headers = await call_api(api_stack, token)
    assert status == 403 and body["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in headers["WWW-Authenticate"]
    app_token = await client_credentials(api_stack, NO_ROLE_CLIENT)
    status, body, _ = await call_api(api_stack, app_token)
    assert status == 403 and body["error"] == "insufficient_scope"


async def test_a_rotated_key_is_fetched_once_for_an_unknown_kid(api_stack: Stack) -> None:
    # R6: Entra rolls its keys: a token signed with a key published after the broker fetched the JWKS is
    # accepted after one refetch.
    idp = idp_of(api_stack)
    status, _, _ = await call_api(api_stack, sign_with(idp.keys.current, good_delegated(idp)))
    assert status == 200
    new_key = idp.keys.rotate(time.time())
    status, body, _ = await call_api(api_stack, sign_with(new_key, good_delegated(idp)))
    assert status == 200, body


async def test_v1_app_only_token(tmp_path: Path) -> None:
    # accessTokenAcceptedVersion 1: iss https://sts.windows.net/{tid}/, aud the App ID URI, appid.
    async with running_stack(
        "memory", tmp_path, {}, idp_config=api_directory(version=1), routes_extra=[API_ROUTE]
    ) as stack:
        token = await client_credentials(stack, SYNC_CLIENT)
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["iss"] == f"https://sts.windows.net/{CONTOSO_TID}/" and claims["aud"] == APP_ID_URI
        status, body, _ = await call_api(stack, token)
        assert status == 200, body
        assert assertion_claims(body)["appid"] == SYNC_CLIENT


async def test_app_only_claims_helper_matches_the_token_endpoint(api_stack: Stack) -> None:
    # The forged-token helpers build what the token endpoint issues (so refusals test one rule each).
    idp = idp_of(api_stack)
    tenant = idp.config.tenants[0]
    issued = jwt.decode(await client_credentials(api_stack, SYNC_CLIENT), options={"verify_signature": False})
    built = app_only_claims(tenant.clients[0], tenant, idp.issuer(tenant), SYNC_CLIENT, time.time())
    assert {k: built[k] for k in ("aud", "iss", "oid", "roles", "idtyp", "azp")} == {
        k: issued[k] for k in ("aud", "iss", "oid", "roles", "idtyp", "azp")
    }

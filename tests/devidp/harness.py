"""A real dev IdP on a loopback port, and a small client that walks its pages like a browser would."""

from __future__ import annotations

import base64
import re
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlsplit

import aiohttp
import jwt
from aiohttp import web
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from devidp import DevClient, DevIdpConfig, DevTenant, DevUser, SigningKeys, create_devidp_app

CONTOSO_ID = "3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c"
FABRIKAM_ID = "8b7c6d5e-4f3a-4b2c-9d1e-0f9a8b7c6d5e"
CONTOSO_CLIENT = "6a4f3e2d-1c0b-4a9f-8e7d-6c5b4a3f2e1d"
FABRIKAM_CLIENT = "2e1d0c9b-8a7f-4e6d-5c4b-3a2f1e0d9c8b"
# Characters that RFC 6749 2.3.1 form-encoding changes, to prove Basic credentials are decoded properly.
CONTOSO_SECRET = "c0nt0so:s3cret+with/odd=chars%"
FABRIKAM_SECRET = "fabrikam-secret"
REDIRECT_URI = "http://localhost:8080/.auth/callback"
LOGOUT_URI = "http://localhost:8080/.auth/logout/done"
ADELE_OID = "5d1f6b2a-8c3e-4f7a-9b0d-1e2c3a4b5d6e"
ALEX_OID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
MEGAN_OID = "4c3b2a1d-0e9f-4a8b-b7c6-d5e4f3a2b1c0"
GROUP_ID = "c7e9a1b3-2d4f-4a6b-8c0e-9f1a2b3c4d5e"


def make_config() -> DevIdpConfig:
    """Two companies, each with the broker registered and a few users."""
    return DevIdpConfig(
        tenants=[
            DevTenant(
                tenant_id=CONTOSO_ID,
                display_name="Contoso",
                domains=["contoso.example"],
                clients=[
                    DevClient(
                        CONTOSO_CLIENT,
                        CONTOSO_SECRET,
                        [REDIRECT_URI],
                        [LOGOUT_URI],
                        display_name="Contoso Wiki",
                    )
                ],
                users=[
                    DevUser(
                        ADELE_OID,
                        "Adele Vance",
                        "adele@contoso.example",
                        email="adele@contoso.example",
                        given_name="Adele",
                        family_name="Vance",
                        roles=["Wiki.Admin"],
                        groups=[GROUP_ID],
                    ),
                    DevUser(ALEX_OID, "Alex Wilber", "alex@contoso.example"),
                ],
            ),
            DevTenant(
                tenant_id=FABRIKAM_ID,
                display_name="Fabrikam",
                domains=["fabrikam.example"],
                clients=[DevClient(FABRIKAM_CLIENT, FABRIKAM_SECRET, [REDIRECT_URI], [LOGOUT_URI])],
                users=[
                    DevUser(
                        MEGAN_OID,
                        "Megan Bowen",
                        "megan@fabrikam.example",
                        roles=["Wiki.Reader"],
                    )
                ],
            ),
        ]
    )


class FakeClock:
    """A settable clock: starts at real time (so pyjwt accepts the tokens) and moves only when told."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward without sleeping."""
        self.now += seconds


@dataclass
class Form:
    """One <form> of a page: where it posts and its hidden fields, in order."""

    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)

    def value(self, name: str) -> str | None:
        """The first value of field ``name``."""
        return next((v for k, v in self.fields if k == name), None)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "input" and self.forms and "name" in a:
            self.forms[-1].fields.append((a["name"], a.get("value", "")))


def parse_forms(page: str) -> list[Form]:
    """Every form on ``page``."""
    parser = _FormParser()
    parser.feed(page)
    return parser.forms


@dataclass(frozen=True)
class Pkce:
    """A PKCE verifier and its S256 challenge."""

    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        return cls(verifier, create_s256_code_challenge(verifier))


def basic_auth(client_id: str, secret: str) -> str:
    """An Authorization header value encoded per RFC 6749 2.3.1 (form-encode, then base64)."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def query_of(location: str) -> dict[str, str]:
    """The query parameters of a redirect ``Location``."""
    return dict(parse_qsl(urlsplit(location).query))


@dataclass
class DevIdpHarness:
    """The running IdP plus helpers for each protocol step."""

    base: str
    app: web.Application
    clock: FakeClock
    config: DevIdpConfig
    session: aiohttp.ClientSession

    def url(self, tenant: str, path: str) -> str:
        return f"{self.base}/{tenant}/{path}"

    def issuer(self, tenant_id: str) -> str:
        return f"{self.base}/{tenant_id}/v2.0"

    def authorize_params(self, pkce: Pkce, **overrides: str) -> dict[str, str]:
        params = {
            "client_id": CONTOSO_CLIENT,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile email",
            "state": secrets.token_urlsafe(16),
            "nonce": secrets.token_urlsafe(16),
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
        }
        params.update(overrides)
        return {k: v for k, v in params.items() if v != ""}

    async def sign_in_page(self, params: dict[str, str], tenant: str = CONTOSO_ID) -> str:
        async with self.session.get(self.url(tenant, "oauth2/v2.0/authorize"), params=params) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.text()

    async def pick(
        self, params: dict[str, str], username: str, tenant: str = CONTOSO_ID
    ) -> aiohttp.ClientResponse:
        """Open the sign-in page and press the button of ``username``; the response is not followed."""
        page = await self.sign_in_page(params, tenant)
        form = next(f for f in parse_forms(page) if f.value("username") == username)
        assert form.method == "post"
        resp = await self.session.post(self.base + form.action, data=form.fields, allow_redirects=False)
        await resp.read()
        return resp

    async def code_for(
        self, params: dict[str, str], username: str = "adele@contoso.example", tenant: str = CONTOSO_ID
    ) -> str:
        """Sign in with ``response_mode=query`` and return the code delivered to the redirect URI."""
        resp = await self.pick(params, username, tenant)
        assert resp.status == 302, await resp.text()
        reply = query_of(resp.headers["Location"])
        assert reply["state"] == params["state"]
        return reply["code"]

    async def token(
        self,
        data: dict[str, str],
        *,
        tenant: str = CONTOSO_ID,
        authorization: str | None = None,
        raw: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """POST to the token endpoint; unless ``raw``, the Contoso client uses client_secret_post."""
        headers = {"Authorization": authorization} if authorization else {}
        body = dict(data)
        if authorization is None and not raw:
            body.setdefault("client_id", CONTOSO_CLIENT)
            body.setdefault("client_secret", CONTOSO_SECRET)
        async with self.session.post(
            self.url(tenant, "oauth2/v2.0/token"), data=body, headers=headers
        ) as resp:
            return resp.status, await resp.json()

    async def redeem(self, code: str, pkce: Pkce, **extra: str) -> tuple[int, dict[str, Any]]:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
        data["code_verifier"] = pkce.verifier
        data.update(extra)
        return await self.token(data)

    async def sign_in(
        self, username: str = "adele@contoso.example", scope: str = "openid profile email"
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """A whole code flow at Contoso: the authorize parameters used and the token response."""
        pkce = Pkce.new()
        params = self.authorize_params(pkce, scope=scope)
        status, body = await self.redeem(await self.code_for(params, username), pkce)
        assert status == 200, body
        return params, body

    async def get_json(self, url: str, **params: str) -> dict[str, Any]:
        """GET a JSON document (discovery, keys, stats) that must answer 200."""
        async with self.session.get(url, params=params) as resp:
            assert resp.status == 200, await resp.text()
            body: dict[str, Any] = await resp.json()
            return body

    async def control(self, path: str, body: Any = None, **params: str) -> tuple[int, dict[str, Any]]:
        """POST to a test-only ``/_devidp/`` control endpoint."""
        async with self.session.post(f"{self.base}/_devidp/{path}", json=body, params=params) as resp:
            return resp.status, await resp.json()


@asynccontextmanager
async def running_devidp(
    config: DevIdpConfig, clock: FakeClock, keys: SigningKeys
) -> AsyncIterator[DevIdpHarness]:
    """Serve the IdP on a free loopback port whose URL is known before the app is built."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_devidp_app(config, base, clock=clock, keys=keys)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        async with aiohttp.ClientSession() as session:
            yield DevIdpHarness(base, app, clock, config, session)
    finally:
        await runner.cleanup()


# Entra's error_description: "AADSTSnnnn: message" then trace, correlation and timestamp lines.
DESCRIPTION = re.compile(
    r"^AADSTS(\d+): .+\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: [0-9a-f-]{36}\r\n"
    r"Timestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$",
    re.DOTALL,
)


async def published_keys(idp: DevIdpHarness, tenant_id: str = CONTOSO_ID, **params: str) -> jwt.PyJWKSet:
    """The JWKS at the tenant's keys endpoint."""
    return jwt.PyJWKSet.from_dict(await idp.get_json(idp.url(tenant_id, "discovery/v2.0/keys"), **params))


async def verify_id_token(idp: DevIdpHarness, token: str, tenant_id: str = CONTOSO_ID) -> dict[str, Any]:
    """Validate like a relying party: keys from jwks_uri, exact issuer and audience."""
    metadata = await idp.get_json(idp.url(tenant_id, "v2.0/.well-known/openid-configuration"))
    jwks = jwt.PyJWKSet.from_dict(await idp.get_json(metadata["jwks_uri"]))
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "JWT" and header["alg"] == "RS256"
    key = next(k for k in jwks.keys if k.key_id == header["kid"])
    claims: dict[str, Any] = jwt.decode(
        token, key, algorithms=["RS256"], audience=CONTOSO_CLIENT, issuer=metadata["issuer"]
    )
    return claims


def assert_entra_error(body: dict[str, Any], error: str, code: int) -> None:
    """Entra's token-endpoint error shape, exactly."""
    assert body["error"] == error
    assert body["error_codes"] == [code]
    match = DESCRIPTION.match(body["error_description"])
    assert match and match.group(1) == str(code), body["error_description"]
    assert body["trace_id"] in body["error_description"]
    assert body["correlation_id"] in body["error_description"]
    assert body["timestamp"] in body["error_description"]
    assert body["error_uri"].endswith(f"/error?code={code}")

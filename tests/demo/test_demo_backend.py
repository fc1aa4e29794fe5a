"""The demo backend over real loopback sockets: assertion checks, the whoami views and the helpers."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from multidict import CIMultiDict, CIMultiDictProxy

from broker.grammar.host import split_listen
from demo import create_demo_app
from demo.helpers import MAX_SLOW_SECONDS, slow_seconds
from demo.page import collect_headers

ISSUER = "http://gateway.test:8080"
AUDIENCE = "wiki.example.com"
JSON = {"Accept": "application/json"}


@dataclass
class SigningKey:
    """A key the fake gateway signs with and publishes."""

    kid: str
    private: Any
    alg: str = "ES256"

    def jwk(self) -> dict[str, Any]:
        if self.alg == "ES256":
            data = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            data = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**data, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def sign(self, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "tid-1:oid-1",
            "tid": "tid-1",
            "oid": "oid-1",
            "name": "Ada Lovelace",
            "email": "ada@contoso.com",
            "preferred_username": "ada@contoso.com",
            "role": "writer",
            "roles": ["writer"],
            "groups": [],
            "login_code": "contoso",
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid})


def new_ec_key(kid: str = "k1") -> SigningKey:
    return SigningKey(kid, ec.generate_private_key(ec.SECP256R1()))


@dataclass
class FakeGateway:
    """Serves a JWKS whose keys a test can rotate, and counts the fetches."""

    keys: list[SigningKey]
    fetches: int = 0

    async def jwks(self, request: web.Request) -> web.Response:
        self.fetches += 1
        return web.json_response({"keys": [k.jwk() for k in self.keys]})


@dataclass
class FakeClock:
    """A monotonic clock the test moves by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Demo:
    """A running demo backend and what it trusts."""

    url: str
    gateway: FakeGateway
    clock: FakeClock
    http: aiohttp.ClientSession
    runners: list[web.AppRunner] = field(default_factory=list)

    async def whoami(self, token: str | None = None, path: str = "/", **kwargs: Any) -> dict[str, Any]:
        headers = CIMultiDict(JSON)
        if token is not None:
            headers["X-Broker-Assertion"] = token
        async with self.http.get(self.url + path, headers=headers, **kwargs) as resp:
            assert resp.status == 200
            body: dict[str, Any] = await resp.json()
            return body


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


DemoFactory = Callable[..., Any]


@pytest.fixture
async def start_demo() -> AsyncIterator[DemoFactory]:
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(
        audiences: list[str] | None = None, keys: list[SigningKey] | None = None, jwks_url: str | None = None
    ) -> Demo:
        gateway = FakeGateway(keys if keys is not None else [new_ec_key()])
        gw_app = web.Application()
        gw_app.router.add_get("/.auth/jwks.json", gateway.jwks)
        gw_runner, gw_url = await serve(gw_app)
        clock = FakeClock()
        app = create_demo_app(jwks_url or gw_url + "/.auth/jwks.json", ISSUER, audiences, clock=clock)
        runner, url = await serve(app)
        runners.extend([runner, gw_runner])
        http = aiohttp.ClientSession()
        sessions.append(http)
        return Demo(url, gateway, clock, http)

    yield start
    for session in sessions:
        await session.close()
    for runner in runners:
        await runner.cleanup()


async def test_valid_assertion_is_verified(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    key = demo.gateway.keys[0]
    body = await demo.whoami(key.sign())
    assertion = body["assertion"]
    assert assertion["present"] is True
    assert assertion["valid"] is True, assertion["error"]
    assert assertion["error"] is None
    assert assertion["header"]["kid"] == key.kid
    assert assertion["header"]["alg"] == "ES256"
    assert assertion["claims"]["sub"] == "tid-1:oid-1"
    assert assertion["claims"]["aud"] == AUDIENCE  # shown although no audience is configured
    assert body["method"] == "GET"
    assert body["path"] == "/"
    assert body["body_bytes"] == 0


async def test_rs256_key_is_accepted(start_demo: DemoFactory) -> None:
    key = SigningKey("rsa1", rsa.generate_private_key(public_exponent=65537, key_size=2048), alg="RS256")
    demo = await start_demo(keys=[key])
    body = await demo.whoami(key.sign())
    assert body["assertion"]["valid"] is True, body["assertion"]["error"]


async def test_tampered_signature_is_invalid(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    head, payload, signature = demo.gateway.keys[0].sign().split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    body = await demo.whoami(f"{head}.{payload}.{flipped}")
    assert body["assertion"]["valid"] is False
    assert body["assertion"]["error"] == "Signature verification failed"
    assert body["assertion"]["claims"] == {}
    assert body["assertion"]["unverified_claims"]["sub"] == "tid-1:oid-1"


async def test_key_from_another_issuer_is_invalid(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    impostor = new_ec_key(demo.gateway.keys[0].kid)  # same kid, different key
    body = await demo.whoami(impostor.sign())
    assert body["assertion"]["valid"] is False
    assert body["assertion"]["error"] == "Signature verification failed"


async def test_wrong_issuer_is_invalid(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    body = await demo.whoami(demo.gateway.keys[0].sign(iss="http://evil.test"))
    assert body["assertion"]["valid"] is False
    assert body["assertion"]["error"] == "Invalid issuer"


async def test_audience_checked_only_when_configured(start_demo: DemoFactory) -> None:
    demo = await start_demo(audiences=[AUDIENCE, "other.example.com"])
    key = demo.gateway.keys[0]
    assert (await demo.whoami(key.sign()))["assertion"]["valid"] is True
    wrong = (await demo.whoami(key.sign(aud="intranet.example.com")))["assertion"]
    assert wrong["valid"] is False
    assert "audience" in wrong["error"].lower()
    missing = key.sign()
    claims = jwt.decode(missing, options={"verify_signature": False})
    del claims["aud"]
    no_aud = jwt.encode(claims, key.private, algorithm="ES256", headers={"kid": key.kid})
    assert (await demo.whoami(no_aud))["assertion"]["valid"] is False


async def test_expired_is_invalid_beyond_leeway(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    key = demo.gateway.keys[0]
    now = int(time.time())
    expired = (await demo.whoami(key.sign(iat=now - 600, exp=now - 120)))["assertion"]
    assert expired["valid"] is False
    assert expired["error"] == "Signature has expired"
    within_leeway = (await demo.whoami(key.sign(iat=now - 600, exp=now - 10)))["assertion"]
    assert within_leeway["valid"] is True


async def test_disallowed_algorithm_is_invalid(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    kid = demo.gateway.keys[0].kid
    token = jwt.encode(
        {"iss": ISSUER, "iat": int(time.time()), "exp": int(time.time()) + 60},
        "a-shared-secret-long-enough-for-hs256!",
        algorithm="HS256",
        headers={"kid": kid},
    )
    body = await demo.whoami(token)
    assert body["assertion"]["valid"] is False
    assert body["assertion"]["error"] == "The specified alg value is not allowed"


async def test_unknown_kid_refetches_at_most_every_30_seconds(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    old = demo.gateway.keys[0]
    assert (await demo.whoami(old.sign()))["assertion"]["valid"] is True
    assert demo.gateway.fetches == 1
    assert (await demo.whoami(old.sign()))["assertion"]["valid"] is True
    assert demo.gateway.fetches == 1  # cached

    new = new_ec_key("k2")
    demo.gateway.keys = [new, old]  # rotation: the new key signs, the old one is still published
    demo.clock.now += 10
    early = (await demo.whoami(new.sign()))["assertion"]
    assert early["valid"] is False
    assert "unknown kid 'k2'" in early["error"]
    assert demo.gateway.fetches == 1  # too soon to refetch

    demo.clock.now += 30
    assert (await demo.whoami(new.sign()))["assertion"]["valid"] is True
    assert demo.gateway.fetches == 2
    assert (await demo.whoami(old.sign()))["assertion"]["valid"] is True
    assert demo.gateway.fetches == 2

    demo.clock.now += 60
    stranger = (await demo.whoami(new_ec_key("k3").sign()))["assertion"]
    assert stranger["valid"] is False
    assert "unknown kid 'k3'" in stranger["error"]
    assert demo.gateway.fetches == 3


async def test_no_header_is_not_present(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    body = await demo.whoami(None)
    assert body["assertion"] == {
        "present": False,
        "valid": False,
        "error": None,
        "header": {},
        "claims": {},
        "unverified_claims": {},
    }
    assert demo.gateway.fetches == 0


async def test_garbage_and_missing_kid_are_invalid(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    garbage = (await demo.whoami("not-a-jwt"))["assertion"]
    assert garbage["present"] is True
    assert garbage["valid"] is False
    assert garbage["error"]
    key = demo.gateway.keys[0]
    now = int(time.time())
    no_kid = jwt.encode({"iss": ISSUER, "iat": now, "exp": now + 60}, key.private, algorithm="ES256")
    assert (await demo.whoami(no_kid))["assertion"]["error"] == "assertion has no kid"


async def test_two_assertion_headers_are_invalid(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    token = demo.gateway.keys[0].sign()
    headers = CIMultiDict([("Accept", "application/json")])
    headers.add("X-Broker-Assertion", token)
    headers.add("X-Broker-Assertion", token)
    async with demo.http.get(demo.url + "/", headers=headers) as resp:
        body = await resp.json()
    assert body["assertion"]["valid"] is False
    assert "2 assertion headers" in body["assertion"]["error"]


async def test_unreachable_jwks_is_shown_not_500(start_demo: DemoFactory) -> None:
    # Port 9 (discard) on loopback is closed here; the fetch fails fast.
    demo = await start_demo(jwks_url="http://127.0.0.1:9/.auth/jwks.json")
    body = await demo.whoami(demo.gateway.keys[0].sign())
    assert body["assertion"]["valid"] is False
    assert "could not fetch the JWKS" in body["assertion"]["error"]


async def test_html_page_escapes_claims(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    token = demo.gateway.keys[0].sign(name="<script>alert(1)</script>", roles=["writer", "<b>x</b>"])
    headers = {"X-Broker-Assertion": token, "Accept": "text/html", "X-Evil": '"><img src=x onerror=1>'}
    async with demo.http.get(demo.url + "/wiki/page?a=<i>", headers=headers) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        page = await resp.text()
    assert "<script>" not in page
    assert "<img" not in page
    assert "<b>x</b>" not in page
    assert "Signed in as &lt;script&gt;alert(1)&lt;/script&gt; (tid-1:oid-1) — company contoso" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=1&gt;" in page
    assert "Verified claims" in page


async def test_html_page_shows_rejection(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    token = demo.gateway.keys[0].sign(iss="http://evil.test")
    async with demo.http.get(demo.url + "/", headers={"X-Broker-Assertion": token}) as resp:
        page = await resp.text()
    assert "Assertion rejected: Invalid issuer" in page
    assert "NOT verified" in page
    async with demo.http.get(demo.url + "/") as resp:
        assert "Not signed in" in await resp.text()


async def test_format_query_overrides_accept(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    async with demo.http.get(demo.url + "/x?format=json", headers={"Accept": "text/html"}) as resp:
        assert resp.content_type == "application/json"
        assert (await resp.json())["query"] == "format=json"
    async with demo.http.get(demo.url + "/x?format=html", headers=JSON) as resp:
        assert resp.content_type == "text/html"


async def test_repeated_headers_are_kept_as_lists(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    headers = CIMultiDict([("Accept", "application/json"), ("X-Multi", "a"), ("X-Multi", "b")])
    headers.add("X-Single", "only")
    async with demo.http.get(demo.url + "/", headers=headers) as resp:
        received = (await resp.json())["headers"]
    assert received["X-Multi"] == ["a", "b"]
    assert received["X-Single"] == "only"
    assert received["Accept"] == "application/json"


def test_collect_headers_groups_names_case_insensitively() -> None:
    raw = CIMultiDict([("X-Multi", "a"), ("x-multi", "b"), ("Host", "h"), ("X-MULTI", "c")])
    assert collect_headers(CIMultiDictProxy(raw)) == {"X-Multi": ["a", "b", "c"], "Host": "h"}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_request_body_is_counted(start_demo: DemoFactory, method: str) -> None:
    demo = await start_demo()
    size = 3 * 1024 * 1024 + 7

    async def chunks() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            piece = min(100_000, size - sent)
            yield b"x" * piece
            sent += piece

    async with demo.http.request(method, demo.url + "/upload/here", data=chunks(), headers=JSON) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["method"] == method
    assert body["path"] == "/upload/here"
    assert body["body_bytes"] == size


async def test_head_answers_without_body(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    async with demo.http.head(demo.url + "/anything") as resp:
        assert resp.status == 200
        assert await resp.read() == b""


async def test_helper_status(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    async with demo.http.get(demo.url + "/_demo/status/418") as resp:
        assert resp.status == 418
        assert await resp.json() == {"status": 418}
    async with demo.http.get(demo.url + "/_demo/status/204") as resp:
        assert resp.status == 204
    for bad in ("abc", "99", "600"):
        async with demo.http.get(demo.url + f"/_demo/status/{bad}") as resp:
            assert resp.status == 400


async def test_helper_redirect(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    url = demo.url + "/_demo/redirect"
    async with demo.http.get(url, params={"to": "/somewhere?x=1"}, allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == "/somewhere?x=1"
    async with demo.http.get(url, allow_redirects=False) as resp:
        assert resp.status == 400
    async with demo.http.get(url, params={"to": "/a\r\nSet-Cookie: x=1"}, allow_redirects=False) as resp:
        assert resp.status == 400


async def test_helper_cookies(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    async with demo.http.get(demo.url + "/_demo/cookies", headers={"Cookie": "in=1"}) as resp:
        assert resp.status == 200
        set_cookies = resp.headers.getall("Set-Cookie")
        body = await resp.json()
    assert len(set_cookies) == 2
    assert set_cookies[0].startswith("demo_a=alpha")
    assert set_cookies[1].startswith("demo_b=beta")
    assert "HttpOnly" in set_cookies[1]
    assert body == {"received": {"in": "1"}}


async def test_helper_slow(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    started = time.monotonic()
    async with demo.http.get(demo.url + "/_demo/slow", params={"seconds": "0.2"}) as resp:
        assert resp.status == 200
        assert await resp.json() == {"slept": 0.2}
    assert time.monotonic() - started >= 0.2
    async with demo.http.get(demo.url + "/_demo/slow", params={"seconds": "soon"}) as resp:
        assert resp.status == 400
    assert slow_seconds("1000") == MAX_SLOW_SECONDS
    assert slow_seconds("-5") == 0.0
    with pytest.raises(ValueError):
        slow_seconds("nan")


async def test_helper_bytes_streams_zeros(start_demo: DemoFactory) -> None:
    demo = await start_demo()
    n = 5 * 64 * 1024 + 123
    async with demo.http.get(demo.url + "/_demo/bytes", params={"n": str(n)}) as resp:
        assert resp.status == 200
        assert resp.headers["Transfer-Encoding"] == "chunked"
        data = await resp.read()
    assert len(data) == n
    assert data == bytes(n)
    async with demo.http.get(demo.url + "/_demo/bytes", params={"n": "0"}) as resp:
        assert await resp.read() == b""
    for bad in ("-1", "lots"):
        async with demo.http.get(demo.url + "/_demo/bytes", params={"n": bad}) as resp:
            assert resp.status == 400


def test_split_listen() -> None:
    assert split_listen("0.0.0.0:9001") == ("0.0.0.0", 9001)
    assert split_listen("[::1]:9001") == ("::1", 9001)
    with pytest.raises(ValueError):
        split_listen("9001")

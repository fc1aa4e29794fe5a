"""The whole product on loopback: dev IdP, whoami backend and gateway, configured like production.

Nothing is mocked: the gateway talks HTTP to the dev IdP and the backend, sessions go to a real store
(memory or a spawned redis-server), tokens are really signed and verified.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import yaml
from aiohttp import web
from opentelemetry.sdk.trace.export import SpanExporter

from broker.app import create_app
from broker.config.load import load_config_text
from broker.config.validate import decode_secret_key
from broker.identity.assertion import generate_es256_pem
from broker.sessions.sealing import ServerKeys
from demo import create_demo_app
from devidp import DevClient, DevIdpConfig, DevTenant, DevUser, create_devidp_app
from tests.support.html import Form, forms
from tests.support.ports import HeldPort
from tests.support.servers import serve

CONTOSO_TID = "3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c"
FABRIKAM_TID = "8b7c6d5e-4f3a-4b2c-9d1e-0f9a8b7c6d5e"
CONTOSO_CLIENT = "6a4f3e2d-1c0b-4a9f-8e7d-6c5b4a3f2e1d"
FABRIKAM_CLIENT = "2e1d0c9b-8a7f-4e6d-5c4b-3a2f1e0d9c8b"
CONTOSO_SECRET = "contoso-test-secret-value"
FABRIKAM_SECRET = "fabrikam-test-secret-value"

ADELE = DevUser(
    oid="0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
    name="Adele Vance",
    username="adele@contoso.example",
    email="adele@contoso.example",
    given_name="Adele",
    family_name="Vance",
    roles=["Wiki.Admin"],
    groups=["a1b2c3d4-0000-4000-8000-000000000001"],
)
ALEX = DevUser(
    oid="1d2e3f4a-5b6c-4d7e-8f9a-0b1c2d3e4f5a", name="Alex Wilber", username="alex@contoso.example"
)
MEGAN = DevUser(
    oid="2e3f4a5b-6c7d-4e8f-9a0b-1c2d3e4f5a6b",
    name="Megan Bowen",
    username="megan@fabrikam.example",
    email="megan@fabrikam.example",
    roles=["Wiki.Reader"],
)


def new_session_key() -> str:
    """A sessions server key as an operator makes one (`openssl rand -base64 32`)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def devidp_config() -> DevIdpConfig:
    """Two tenants with one app registration each; loopback redirect URIs (any port, as Entra allows)."""
    return DevIdpConfig(
        tenants=[
            DevTenant(
                CONTOSO_TID,
                "Contoso",
                ["contoso.example"],
                [
                    DevClient(
                        CONTOSO_CLIENT,
                        CONTOSO_SECRET,
                        ["http://127.0.0.1/.auth/callback"],
                        ["http://127.0.0.1/.auth/logout/done"],
                    )
                ],
                [ADELE, ALEX],
            ),
            DevTenant(
                FABRIKAM_TID,
                "Fabrikam",
                ["fabrikam.example"],
                [DevClient(FABRIKAM_CLIENT, FABRIKAM_SECRET, ["http://127.0.0.1/.auth/callback"])],
                [MEGAN],
            ),
        ]
    )


def gateway_config(
    gw_port: int, idp_url: str, backend_url: str, store: str, key_file: Path
) -> dict[str, Any]:
    """A gateway config like an operator's, pointing at the loopback servers (as a dict to tweak)."""
    return {
        "server": {
            "public_url": f"http://127.0.0.1:{gw_port}",
            "login_aliases": ["/login/{code}"],
            # Every test client is 127.0.0.1, one "office" far busier than any real one (load and traffic
            # tests start many sign-ins a second); the flood tests set their own, low, limits.
            "login_rate_per_second": 1000,
            "login_rate_burst": 1000,
        },
        # A Redis store needs the sessions' server key (fail closed); the memory store makes its own.
        "sessions": {"store": store}
        if store == "memory"
        else {"store": store, "secret_keys": ["${TEST_SESSION_KEY}"]},
        "signing": {"keys": [str(key_file)]},
        "tenants": {
            "contoso": {
                "display_name": "Contoso Ltd",
                "tenant_id": CONTOSO_TID,
                "client_id": CONTOSO_CLIENT,
                "client_secret": "${TEST_CONTOSO_SECRET}",
                "authority": idp_url,
                "note": "Use your Contoso work account.",
                "email_domains": ["contoso.example"],
                "roles": {
                    "order": ["reader", "writer", "admin"],
                    "default": "reader",
                    "app_roles": {"Wiki.Admin": "admin"},
                },
            },
            "fabrikam": {
                "display_name": "Fabrikam, Inc.",
                "tenant_id": FABRIKAM_TID,
                "client_id": FABRIKAM_CLIENT,
                "client_secret": "${TEST_FABRIKAM_SECRET}",
                "authority": idp_url,
                "roles": {
                    "order": ["reader", "admin"],
                    "default": "reader",
                    "app_roles": {"Wiki.Reader": "reader"},
                },
            },
        },
        "routes": [
            {
                "host": "127.0.0.1",
                "path": "/",
                "upstream": backend_url,
                "allow": {"login_codes": ["contoso"]},
                "public_paths": ["/public/"],
                "headers": {"X-Remote-User": "preferred_username", "X-Remote-Roles": "roles"},
            },
            {
                "host": "127.0.0.1",
                "path": "/fabrikam/",
                "upstream": backend_url,
                "allow": {"login_codes": ["fabrikam"]},
            },
            {"host": "127.0.0.1", "path": "/open/", "upstream": backend_url, "auth": "public"},
        ],
    }


@dataclass
class Stack:
    """URLs of the running servers and helpers to act as a browser."""

    gateway_url: str
    idp_url: str
    backend_url: str
    store_url: str
    idp_directory: DevIdpConfig
    runners: list[web.AppRunner] = field(default_factory=list)
    idp_runner: web.AppRunner | None = None
    clock: Callable[[], float] = time.time
    gateway_urls: list[str] = field(default_factory=list)
    config_path: Path = Path()
    env: dict[str, str] = field(default_factory=dict)
    idp_port: HeldPort | None = None  # the dev IdP's port (``idp_url``), held while it stops and starts

    def session_keys(self) -> ServerKeys:
        """The sessions' server keys the gateway was configured with (Redis stacks)."""
        raw = decode_secret_key(self.env["TEST_SESSION_KEY"])
        assert raw is not None
        return ServerKeys([raw])

    async def start_idp(self) -> None:
        """Start (or restart) the dev IdP on its port, with a fresh state."""
        self.idp_runner = await serve(
            create_devidp_app(self.idp_directory, self.idp_url, clock=self.clock), self.held_idp_port()
        )

    def held_idp_port(self) -> HeldPort:
        """The dev IdP's held port (a stack made without one cannot start the dev IdP)."""
        assert self.idp_port is not None, "the Stack was made without idp_port"
        return self.idp_port

    async def stop_idp(self) -> None:
        """Really stop the dev IdP: its port refuses connections afterwards."""
        if self.idp_runner is not None:
            await self.idp_runner.cleanup()
            self.idp_runner = None

    async def pause_idp(self) -> None:
        """Make the dev IdP unreachable (port closed, open connections dropped) while it keeps its state, so
        codes it issued still work after ``resume_idp`` (``stop_idp`` forgets them)."""
        assert self.idp_runner is not None and self.idp_runner.server is not None
        for site in list(self.idp_runner.sites):
            await site.stop()
        await self.idp_runner.server.shutdown(0.5)

    async def resume_idp(self) -> None:
        """Open the paused dev IdP's port again, with everything it knew."""
        assert self.idp_runner is not None
        await web.SockSite(self.idp_runner, self.held_idp_port().listener()).start()

    def browser(self) -> aiohttp.ClientSession:
        """A client that keeps cookies like a browser (unsafe=True: cookies on an IP host) and never follows
        redirects on its own, so each step of the flow is visible to the test."""
        return aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"Accept": "text/html"}
        )

    async def start_login(self, browser: aiohttp.ClientSession, code: str, rd: str = "/") -> str:
        """Company page -> start -> the dev IdP's sign-in page; return that page's HTML."""
        async with browser.get(f"{self.gateway_url}/.auth/login/{code}", params={"rd": rd}) as page:
            assert page.status == 200, await page.text()
            start = re.search(r'href="([^"]*/start[^"]*)"', await page.text())
            assert start is not None
        start_url = urljoin(self.gateway_url, start.group(1).replace("&amp;", "&"))
        async with browser.get(start_url, allow_redirects=False) as resp:
            assert resp.status == 302, await resp.text()
            authorize = resp.headers["Location"]
        assert authorize.startswith(self.idp_url)
        async with browser.get(authorize) as resp:
            assert resp.status == 200
            return await resp.text()

    async def pick_user(self, browser: aiohttp.ClientSession, sign_in_page: str, username: str) -> Form:
        """Click the user's button on the dev IdP; return the form_post form aimed at the callback."""
        form = next(f for f in forms(sign_in_page) if f.fields.get("username") == username)
        async with browser.post(
            urljoin(self.idp_url, form.action), data=form.fields, allow_redirects=False
        ) as resp:
            assert resp.status == 200, await resp.text()
            posted = forms(await resp.text())
        assert len(posted) == 1
        return posted[0]

    async def post_callback(self, browser: aiohttp.ClientSession, form: Form) -> aiohttp.ClientResponse:
        """Submit Entra's form_post to the gateway's callback (as the browser's auto-submit does), and
        follow the gateway's same-site re-post when it asks for one (as the browser's script does)."""
        resp = await browser.post(form.action, data=form.fields, allow_redirects=False)
        text = await resp.text()
        bounce = [f for f in forms(text) if f.fields.get("bounced") == "1"] if resp.status == 200 else []
        if bounce:
            resp = await browser.post(
                urljoin(form.action, bounce[0].action), data=bounce[0].fields, allow_redirects=False
            )
            await resp.read()
        return resp

    async def login(self, browser: aiohttp.ClientSession, code: str, username: str, rd: str = "/") -> str:
        """A complete login; returns where the callback redirected to."""
        page = await self.start_login(browser, code, rd)
        form = await self.pick_user(browser, page, username)
        resp = await self.post_callback(browser, form)
        assert resp.status == 303, await resp.text()
        return resp.headers["Location"]

    async def whoami(
        self, browser: aiohttp.ClientSession, path: str = "/", **headers: str
    ) -> tuple[int, Any]:
        """GET a proxied page as JSON; (status, body)."""
        async with browser.get(
            f"{self.gateway_url}{path}",
            headers={"Accept": "application/json", **headers},
            allow_redirects=False,
        ) as resp:
            return resp.status, await resp.json(content_type=None)


@asynccontextmanager
async def running_stack(
    store_url: str,
    tmp_path: Path,
    monkey_env: dict[str, str],
    *,
    start_idp: bool = True,
    idp_config: DevIdpConfig | None = None,
    contoso: dict[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
    gateways: int = 1,
    sessions: dict[str, Any] | None = None,
    routes_extra: list[dict[str, Any]] | None = None,
    server: dict[str, Any] | None = None,
    tracing: dict[str, Any] | None = None,
    span_exporter: SpanExporter | None = None,
) -> AsyncIterator[Stack]:
    """Start dev IdP, backend and gateway on ports held until the end; stop them afterwards.

    With ``start_idp=False`` the dev IdP's port stays closed (``stack.start_idp()`` opens it later).
    ``idp_config`` replaces the dev IdP's directory; ``contoso`` overrides keys of the contoso company
    (a value of None removes the key; ``{idp_url}`` in a string value becomes the dev IdP's URL).
    ``gateways`` > 1 starts replicas sharing the config and the store (``stack.gateway_urls``); ``clock``
    drives the gateways and the dev IdP alike; ``sessions`` overrides keys of the sessions section.
    ``routes_extra`` are appended to the routes (``{backend_url}`` in an ``upstream`` becomes the whoami
    backend's URL); ``server`` overrides keys of the server section; ``tracing`` is the tracing section,
    its spans handed to ``span_exporter``.
    """
    with ExitStack() as held:
        # Every port is bound now and held until ``held`` closes (after the servers stopped): the gateway's
        # config names its own port and the others' before any of them serves.
        idp_port, backend_port, *replica_ports = (held.enter_context(HeldPort()) for _ in range(2 + gateways))
        gw_port = replica_ports[0].number
        idp_url, gateway_url, backend_url = idp_port.url, replica_ports[0].url, backend_port.url
        key_file = tmp_path / "assertion.pem"
        key_file.write_bytes(generate_es256_pem())
        monkey_env.update({"TEST_CONTOSO_SECRET": CONTOSO_SECRET, "TEST_FABRIKAM_SECRET": FABRIKAM_SECRET})
        monkey_env.setdefault("TEST_SESSION_KEY", new_session_key())
        raw = gateway_config(gw_port, idp_url, backend_url, store_url, key_file)
        for key, value in (contoso or {}).items():
            if value is None:
                raw["tenants"]["contoso"].pop(key, None)
            else:
                raw["tenants"]["contoso"][key] = (
                    value.replace("{idp_url}", idp_url) if isinstance(value, str) else value
                )
        raw["sessions"].update(sessions or {})
        raw["server"].update(server or {})
        if tracing is not None:
            raw["tracing"] = tracing
        for extra in routes_extra or []:
            if "upstream" in extra:  # auth-only routes (forward-auth) have none
                extra = {**extra, "upstream": str(extra["upstream"]).replace("{backend_url}", backend_url)}
            raw["routes"].append(extra)
        text = yaml.safe_dump(raw)
        (tmp_path / "gateway.yaml").write_text(text)
        config = load_config_text(text, "test.yaml", tmp_path, monkey_env)
        stack = Stack(
            gateway_url,
            idp_url,
            backend_url,
            store_url,
            idp_config or devidp_config(),
            clock=clock,
            idp_port=idp_port,
        )
        stack.gateway_urls = [port.url for port in replica_ports]
        stack.config_path = tmp_path / "gateway.yaml"
        stack.env = dict(monkey_env)
        try:
            if start_idp:
                await stack.start_idp()
            backend = create_demo_app(f"{gateway_url}/.auth/jwks.json", gateway_url, None)
            stack.runners.append(await serve(backend, backend_port))
            for port in replica_ports:
                app = create_app(
                    config,
                    tmp_path,
                    clock=clock,
                    config_path=tmp_path / "gateway.yaml",
                    environ=monkey_env,
                    watch_interval=0.1,
                    span_exporter=span_exporter,
                )
                stack.runners.append(await serve(app, port))
            yield stack
        finally:
            for runner in reversed(stack.runners):
                await runner.cleanup()
            await stack.stop_idp()

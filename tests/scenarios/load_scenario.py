"""Bounded load with identity checks: many simulated users log in, browse and log out across replicas.

Shared by ``tests/scenarios/test_bounded_load.py`` (about 30 s, inside pytest), next to which it lives, and
``bench/soak.py`` (minutes, gateways as processes). Each simulated user is a browser of its own (an aiohttp
cookie jar): it signs in through the real flow (company page -> start -> dev IdP sign-in -> form_post
callback) on a random replica, then loops until the deadline, sending each request to the next replica in turn
(one cookie serves all of them: the sessions live in the shared Redis):

- most requests GET a page of its company's route and check the identity the whoami backend verified
  (signed assertion: ``tid``, ``oid``, ``sub``, ``login_code``, ``roles``, ``role``, username, groups), the
  plain identity headers, that the backend answered *this* request (path and a per-request nonce) and that
  the broker's cookie was not forwarded;
- some GET a public route (200, and no identity at all upstream), ``/.auth/me`` (this user's identity), or
  the other company's route (403 naming this user's company);
- about 1 iteration in 50 uses its session on every replica (so each may hold a cached copy), logs out
  (GET confirm page, POST with the CSRF token) on the current replica, then checks at once that the old
  cookie gets 401 (API client) and 302 to the company login (browser) on *every* replica and that
  ``/.auth/me`` refuses it there, and logs in again on a random replica.

Every answer that differs from the expectation is counted (``errors``, ``wrong_identities``,
``stale_sessions``) and the first few are kept verbatim; nothing stops the load early. No timing is judged:
latencies are only reported.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import aiohttp
from multidict import CIMultiDictProxy

from devidp import DevIdpConfig, DevUser
from tests.support.html import forms
from tests.support.stack import CONTOSO_TID, FABRIKAM_TID, devidp_config

# The gateway's cookie on plain-http loopback (no __Host- prefix without Secure; see broker.sessions.cookie).
COOKIE_NAME = "broker"
# Contoso's role map for the load: three broker roles, so users differ in ``roles`` and ``role`` too.
# Pass as ``running_stack(..., contoso={"roles": CONTOSO_ROLES})`` or set ``tenants.contoso.roles``.
CONTOSO_ROLES: dict[str, Any] = {
    "order": ["reader", "writer", "admin"],
    "default": "reader",
    "app_roles": {"Wiki.Admin": "admin", "Wiki.Writer": "writer"},
}
# (Entra app roles, expected broker roles in the role map's order) per company, assigned round-robin.
_CONTOSO_ROLE_CHOICES: list[tuple[list[str], tuple[str, ...]]] = [
    ([], ("reader",)),
    (["Wiki.Writer"], ("writer",)),
    (["Wiki.Admin"], ("admin",)),
    (["Wiki.Writer", "Wiki.Admin"], ("writer", "admin")),
]
_FABRIKAM_ROLE_CHOICES: list[tuple[list[str], tuple[str, ...]]] = [
    ([], ("reader",)),
    (["Wiki.Reader"], ("reader",)),
]
# Routes of tests.support.stack.gateway_config: "/" is Contoso's (with X-Remote-User/-Roles headers),
# "/fabrikam/" Fabrikam's, "/open/" is auth: public and "/public/" a public path of the "/" route.
_HOME = {"contoso": "/app/", "fabrikam": "/fabrikam/app/"}
_PUBLIC = ("/open/", "/public/")
LOGOUT_EVERY = 50  # about one iteration in this many logs out and in again
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15)
KEPT_SAMPLES = 20


@dataclass(frozen=True)
class LoadUser:
    """One simulated user: the directory entry and what every replica must say about them."""

    code: str  # the login code of the user's company
    tid: str
    user: DevUser
    roles: tuple[str, ...]  # expected broker roles, least to most privileged

    @property
    def sub(self) -> str:
        """The assertion's subject: ``tid:oid``."""
        return f"{self.tid}:{self.user.oid}"

    @property
    def home(self) -> str:
        """A path prefix on the route of the user's own company."""
        return _HOME[self.code]

    @property
    def foreign(self) -> str:
        """A path prefix on the route of the other company (403 for this user)."""
        return _HOME["fabrikam" if self.code == "contoso" else "contoso"]

    def expected_claims(self) -> dict[str, Any]:
        """The identity claims every assertion and ``/.auth/me`` must carry for this user."""
        return {
            "sub": self.sub,
            "tid": self.tid,
            "oid": self.user.oid,
            "login_code": self.code,
            "preferred_username": self.user.username,
            "name": self.user.name,
            "roles": list(self.roles),
            "role": self.roles[-1],
            "groups": list(self.user.groups),
        }


def load_directory(users: int) -> tuple[DevIdpConfig, list[LoadUser]]:
    """The stack's two tenants (same app registrations) with ``users`` generated users split between them.

    Contoso gets the odd one out. Every user has a distinct oid, username and group, and an app-role
    assignment that maps to known broker roles (with ``CONTOSO_ROLES`` for Contoso).
    """
    if users < 2:
        raise ValueError("at least 2 users: one per company")
    directory = devidp_config()
    contoso, fabrikam = directory.tenants
    counts = {"contoso": users - users // 2, "fabrikam": users // 2}
    load_users: list[LoadUser] = []
    for code, tenant, tid, choices in (
        ("contoso", contoso, CONTOSO_TID, _CONTOSO_ROLE_CHOICES),
        ("fabrikam", fabrikam, FABRIKAM_TID, _FABRIKAM_ROLE_CHOICES),
    ):
        tenant.users = []
        for i in range(counts[code]):
            app_roles, broker_roles = choices[i % len(choices)]
            handle = f"load{i:03d}"
            user = DevUser(
                oid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"load-user:{code}:{i}")),
                name=f"Load User {i:03d} ({tenant.display_name})",
                username=f"{handle}@{code}.example",
                email=f"{handle}@{code}.example",
                roles=list(app_roles),
                groups=[str(uuid.uuid5(uuid.NAMESPACE_URL, f"load-group:{code}:{i}"))],
            )
            tenant.users.append(user)
            load_users.append(LoadUser(code, tid, user, broker_roles))
    return directory, load_users


class Unexpected(Exception):
    """An answer with the wrong status or shape, or a failed request."""


class WrongIdentity(Exception):
    """A response that carried, or reported, an identity other than this user's."""


class StaleSession(Exception):
    """A replica still honoured a cookie after its session was signed out."""


@dataclass
class Tally:
    """What the load did and every deviation from the expectation."""

    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    logins: int = 0
    logouts: int = 0
    identity_checks: int = 0
    stale_checks: int = 0
    errors: int = 0
    wrong_identities: int = 0
    stale_sessions: int = 0
    samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    @property
    def problems(self) -> int:
        """Errors, wrong identities and stale sessions together."""
        return self.errors + self.wrong_identities + self.stale_sessions

    def note(self, who: str, exc: BaseException) -> None:
        """Count a deviation and keep the first few descriptions."""
        if isinstance(exc, WrongIdentity):
            self.wrong_identities += 1
        elif isinstance(exc, StaleSession):
            self.stale_sessions += 1
        else:
            self.errors += 1
        if len(self.samples) < KEPT_SAMPLES:
            self.samples.append(f"{who}: {type(exc).__name__}: {exc}")

    def percentile_ms(self, q: float) -> float:
        """The q-quantile (0..1) of the request latencies, in milliseconds (nearest rank)."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        rank = min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))
        return ordered[rank] * 1000

    def summary(self, elapsed: float | None = None) -> str:
        """One line: counts, throughput and latency percentiles."""
        seconds = elapsed if elapsed is not None else time.monotonic() - self.started
        rate = self.requests / seconds if seconds > 0 else 0.0
        return (
            f"{self.requests} requests in {seconds:.1f} s ({rate:.0f} req/s), {self.logins} logins, "
            f"{self.logouts} logouts, {self.identity_checks} identity checks, {self.stale_checks} "
            f"stale-cookie checks; errors {self.errors}, wrong identities {self.wrong_identities}, "
            f"stale sessions {self.stale_sessions}; p50 {self.percentile_ms(0.5):.1f} ms, "
            f"p99 {self.percentile_ms(0.99):.1f} ms"
        )


@dataclass(frozen=True)
class Answer:
    """A response read in full."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def text(self) -> str:
        """The body as text."""
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON (Unexpected if it is not)."""
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise Unexpected(f"HTTP {self.status}, not JSON: {self.text()[:200]!r}") from exc

    def expect(self, *statuses: int, what: str) -> Answer:
        """Itself if the status is one of ``statuses``; Unexpected otherwise."""
        if self.status not in statuses:
            raise Unexpected(f"{what}: HTTP {self.status} (expected {statuses}): {self.text()[:200]!r}")
        return self


class SimulatedUser:
    """One browser driving one user's sessions through the replicas."""

    def __init__(
        self,
        who: LoadUser,
        gateway_urls: Sequence[str],
        idp_url: str,
        tally: Tally,
        rng: random.Random,
        bare: aiohttp.ClientSession,
    ) -> None:
        self.who = who
        self.gateways = list(gateway_urls)
        self.idp_url = idp_url
        self.tally = tally
        self.rng = rng
        self.bare = bare  # no cookie jar: replays an old cookie exactly as given
        self.browser = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies on an IP host; ports are ignored
            headers={"Accept": "text/html"},
            timeout=REQUEST_TIMEOUT,
        )
        self.signed_in = False

    async def run(self, deadline: float) -> None:
        """Log in, then browse until ``deadline`` (monotonic); deviations are counted, never raised."""
        turn = self.rng.randrange(len(self.gateways))
        try:
            while time.monotonic() < deadline:
                turn += 1
                gateway = self.gateways[turn % len(self.gateways)]
                try:
                    if not self.signed_in:
                        await self.login(self.rng.choice(self.gateways))
                    else:
                        await self.step(gateway)
                except Exception as exc:  # every failure is counted; the load goes on
                    self.tally.note(self.who.user.username, exc)
                    # A failed login or logout leaves no usable session: sign in again next time.
                    self.signed_in = self.signed_in and self.ticket() is not None
                    await asyncio.sleep(0.05)
        finally:
            await self.browser.close()

    async def step(self, gateway: str) -> None:
        """One iteration of browsing on ``gateway``."""
        draw = self.rng.random()
        if draw < 1 / LOGOUT_EVERY:
            await self.logout_and_check(gateway)
            await self.login(self.rng.choice(self.gateways))
        elif draw < 0.12:
            await self.public_page(gateway)
        elif draw < 0.22:
            await self.me(gateway)
        elif draw < 0.27:
            await self.foreign_page(gateway)
        else:
            await self.own_page(gateway)

    # -- requests -------------------------------------------------------------------------------------

    async def request(
        self,
        client: aiohttp.ClientSession,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
    ) -> Answer:
        """One request, never following redirects; counted and timed."""
        started = time.perf_counter()
        async with client.request(method, url, headers=headers, data=data, allow_redirects=False) as resp:
            body = await resp.read()
            answer = Answer(resp.status, resp.headers, body)
        self.tally.latencies.append(time.perf_counter() - started)
        self.tally.requests += 1
        return answer

    def ticket(self) -> str | None:
        """The session cookie this browser holds now, if any."""
        return next((c.value for c in self.browser.cookie_jar if c.key == COOKIE_NAME and c.value), None)

    # -- login and logout -----------------------------------------------------------------------------

    async def login(self, gateway: str) -> None:
        """The real flow on ``gateway``: company page -> start -> dev IdP -> form_post -> callback."""
        self.signed_in = False
        who = self.who
        landing = f"{who.home}welcome"
        page = await self.request(self.browser, "GET", f"{gateway}/.auth/login/{who.code}?rd={landing}")
        start = re.search(r'href="([^"]*/start[^"]*)"', page.expect(200, what="company page").text())
        if start is None:
            raise Unexpected("company page without a start link")
        started = await self.request(
            self.browser, "GET", urljoin(gateway + "/", start.group(1).replace("&amp;", "&"))
        )
        authorize = started.expect(302, what="login start").headers.get("Location", "")
        if not authorize.startswith(self.idp_url):
            raise Unexpected(f"login start sent the browser to {authorize!r}, not the IdP")
        sign_in = await self.request(self.browser, "GET", authorize)
        choice = [
            f
            for f in forms(sign_in.expect(200, what="IdP sign-in page").text())
            if f.fields.get("username") == who.user.username
        ]
        if len(choice) != 1:
            raise Unexpected(f"IdP sign-in page lists {who.user.username} {len(choice)} times")
        posted = await self.request(
            self.browser, "POST", urljoin(authorize, choice[0].action), data=choice[0].fields
        )
        form_post = forms(posted.expect(200, what="IdP account choice").text())
        if len(form_post) != 1 or not form_post[0].action.startswith(gateway + "/"):
            raise Unexpected(f"form_post page aims at {[f.action for f in form_post]}, not {gateway}")
        callback = await self.request(self.browser, "POST", form_post[0].action, data=form_post[0].fields)
        bounce = [f for f in forms(callback.text()) if f.fields.get("bounced") == "1"]
        if callback.status == 200 and bounce:
            callback = await self.request(
                self.browser, "POST", urljoin(form_post[0].action, bounce[0].action), data=bounce[0].fields
            )
        landed = callback.expect(303, what="callback").headers.get("Location")
        if landed != landing:
            raise Unexpected(f"callback redirected to {landed!r}, not {landing!r}")
        if self.ticket() is None:
            raise Unexpected("callback set no session cookie the jar kept")
        self.tally.logins += 1
        self.signed_in = True

    async def logout_and_check(self, gateway: str) -> None:
        """Sign out on ``gateway``; then the old cookie must open nothing on any replica."""
        old = self.ticket()
        if old is None:
            raise Unexpected("no session cookie before logout")
        for replica in self.gateways:  # every replica has just used (and may have cached) the session
            await self.own_page(replica)
        confirm = await self.request(self.browser, "GET", f"{gateway}/.auth/logout")
        with_csrf = [f for f in forms(confirm.expect(200, what="logout page").text()) if "csrf" in f.fields]
        if len(with_csrf) != 1:
            raise Unexpected("logout page without exactly one confirm form")
        done = await self.request(self.browser, "POST", f"{gateway}/.auth/logout", data=with_csrf[0].fields)
        done.expect(200, 303, what="logout")
        self.signed_in = False
        self.tally.logouts += 1
        if self.ticket() is not None:
            raise Unexpected("logout left the session cookie in the browser")
        await self.check_signed_out(old)

    async def check_signed_out(self, old: str) -> None:
        """The signed-out cookie, replayed as is: 401 for API clients, 302 for browsers, on every replica."""
        cookie = f"{COOKIE_NAME}={old}"
        who = self.who
        for gateway in self.gateways:
            for accept, status in (("application/json", 401), ("text/html", 302)):
                path = f"{who.home}after-logout"
                answer = await self.request(
                    self.bare, "GET", gateway + path, headers={"Accept": accept, "Cookie": cookie}
                )
                self.tally.stale_checks += 1
                if answer.status == 200:
                    raise StaleSession(
                        f"{gateway}{path} (Accept {accept}) still answered 200 with the signed-out cookie"
                    )
                answer.expect(status, what=f"{gateway}{path} with the signed-out cookie")
                location = answer.headers.get("Location", "")
                if status == 302 and not location.startswith(f"/.auth/login/{who.code}"):
                    raise Unexpected(f"signed-out browser sent to {location!r}")
            me = await self.request(
                self.bare,
                "GET",
                f"{gateway}/.auth/me",
                headers={"Accept": "application/json", "Cookie": cookie},
            )
            self.tally.stale_checks += 1
            if me.status == 200:
                raise StaleSession(f"{gateway}/.auth/me still answered 200 with the signed-out cookie")
            me.expect(401, what=f"{gateway}/.auth/me with the signed-out cookie")

    # -- browsing ------------------------------------------------------------------------------------

    async def whoami(self, gateway: str, prefix: str) -> tuple[Answer, str, str]:
        """GET a whoami page as JSON with a unique path and nonce; (answer, path, query)."""
        path = f"{prefix}{self.rng.randrange(1000)}"
        query = f"n={secrets.token_hex(6)}"
        answer = await self.request(
            self.browser, "GET", f"{gateway}{path}?{query}", headers={"Accept": "application/json"}
        )
        return answer, path, query

    def check_echo(self, body: Any, path: str, query: str) -> dict[str, Any]:
        """The backend's report must describe this very request; return it."""
        if not isinstance(body, dict) or body.get("path") != path or body.get("query") != query:
            shown = body if not isinstance(body, dict) else {k: body.get(k) for k in ("path", "query")}
            raise WrongIdentity(f"backend answered another request: {shown}, expected {path}?{query}")
        return body

    async def own_page(self, gateway: str) -> None:
        """A page of the user's company: 200, and the backend verified an assertion naming this user."""
        answer, path, query = await self.whoami(gateway, self.who.home)
        body = self.check_echo(answer.expect(200, what=f"{gateway}{path}").json(), path, query)
        report = body.get("assertion") or {}
        if not report.get("valid"):
            raise WrongIdentity(f"{gateway}{path}: assertion not valid: {report.get('error')}")
        self.compare(f"{gateway}{path} assertion", report.get("claims") or {})
        headers: dict[str, Any] = body.get("headers") or {}
        if self.who.code == "contoso":  # the "/" route also sends plain headers
            plain = (headers.get("X-Remote-User"), headers.get("X-Remote-Roles"))
            wanted = (self.who.user.username, ",".join(self.who.roles))
            if plain != wanted:
                raise WrongIdentity(f"{gateway}{path}: X-Remote-User/-Roles {plain}, expected {wanted}")
        if f"{COOKIE_NAME}=" in str(headers.get("Cookie", "")):
            raise Unexpected(f"{gateway}{path}: the broker's cookie reached the backend")
        self.tally.identity_checks += 1

    async def public_page(self, gateway: str) -> None:
        """A public route: 200, and no identity at all reaches the backend."""
        answer, path, query = await self.whoami(gateway, self.rng.choice(_PUBLIC))
        body = self.check_echo(answer.expect(200, what=f"{gateway}{path}").json(), path, query)
        report = body.get("assertion") or {}
        headers: dict[str, Any] = body.get("headers") or {}
        if report.get("present") or "X-Remote-User" in headers:
            claims = report.get("claims") or report.get("unverified_claims")
            raise WrongIdentity(f"{gateway}{path}: identity sent on a public route: {claims}")
        self.tally.identity_checks += 1

    async def me(self, gateway: str) -> None:
        """``/.auth/me`` names this user."""
        answer = await self.request(
            self.browser, "GET", f"{gateway}/.auth/me", headers={"Accept": "application/json"}
        )
        me = answer.expect(200, what=f"{gateway}/.auth/me").json()
        self.compare(f"{gateway}/.auth/me", me if isinstance(me, dict) else {})
        self.tally.identity_checks += 1

    async def foreign_page(self, gateway: str) -> None:
        """The other company's route: 403 that names this user's company."""
        answer, path, _ = await self.whoami(gateway, self.who.foreign)
        body = answer.expect(403, what=f"{gateway}{path} (other company)").json()
        if not isinstance(body, dict) or body.get("login_code") != self.who.code:
            raise WrongIdentity(f"{gateway}{path}: 403 for another company: {body}")
        self.tally.identity_checks += 1

    def compare(self, where: str, claims: dict[str, Any]) -> None:
        """WrongIdentity unless ``claims`` carry exactly this user's identity."""
        expected = self.who.expected_claims()
        wrong = {k: claims.get(k) for k, v in expected.items() if claims.get(k) != v}
        if wrong:
            raise WrongIdentity(
                f"{where}: for {self.who.sub} got {wrong}, expected { {k: expected[k] for k in wrong} }"
            )


async def run_load(
    gateway_urls: Sequence[str],
    idp_url: str,
    users: Sequence[LoadUser],
    seconds: float,
    *,
    seed: int = 0,
    progress: Callable[[Tally], None] | None = None,
    progress_every: float = 10.0,
) -> Tally:
    """Run every user concurrently for ``seconds`` (plus the iteration each is in); return the tally.

    ``progress`` is called every ``progress_every`` seconds while the load runs.
    """
    tally = Tally()
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), timeout=REQUEST_TIMEOUT) as bare:
        simulated = [
            SimulatedUser(u, gateway_urls, idp_url, tally, random.Random(f"{seed}:{i}"), bare)
            for i, u in enumerate(users)
        ]
        work = asyncio.gather(*(s.run(deadline) for s in simulated))
        if progress is None:
            await work
        else:
            ticker = asyncio.create_task(_tick(progress, tally, progress_every))
            try:
                await work
            finally:
                ticker.cancel()
    return tally


async def _tick(progress: Callable[[Tally], None], tally: Tally, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        progress(tally)

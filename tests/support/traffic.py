"""Real concurrent traffic through the gateway while a test breaks something behind it, and the checks that
every answer collected stayed clear and safe.

``Traffic`` runs one loop per ``Client`` (a cookie or none, JSON or HTML, one path), each recording every
answer as a ``Sample``: status, the error the answer names (JSON ``error``, or the cause an HTML error page
gives), the user the upstream was told about, and how long it took. The test moves ``traffic.phase``
along (``before`` -> ``fault`` -> ``recovering`` -> ``recovered``); ``problems`` then lists every sample
that broke a rule:

- never a 500, never ``Traceback`` in a body;
- every answer is the client's normal one, or (before recovery only) one of the clear errors the scenario
  allows, with that error's status;
- every 200 identifies the client's own user, and nobody when the client has no session;
- no answer at all (refused, reset, timed out) only where the scenario allows it.

Also here: the servers the scenarios break and repair for real (a Redis with an fsync'd append-only
file, a dev IdP restarted with its keys and grants, a raw TCP upstream that refuses, resets or hangs), and
a clock the gateway and the dev IdP share.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from broker.proxy.forward import TOO_SLOW, UNREACHABLE
from broker.sessions.sealing import SealKey
from broker.sessions.ticket import format_ticket
from devidp import create_devidp_app
from devidp.context import DEVIDP, DevIdp
from tests.support.ports import HeldPort
from tests.support.redis_topologies import Processes, server_argv, wait_until
from tests.support.servers import redis_answers_as, serve
from tests.support.stack import ADELE, ALEX, MEGAN, Stack

KNOWN_USERS = (ADELE.username, ALEX.username, MEGAN.username)


@dataclass(frozen=True)
class ClearError:
    """A documented error answer: its status, and words of its HTML page that name the cause."""

    status: int
    page_words: str


# The gateway's own error answers (broker/middleware.py, broker/proxy/forward.py,
# broker/handlers/protected.py), by the JSON ``error`` code they carry.
CLEAR_ERRORS: dict[str, ClearError] = {
    "session_store_unavailable": ClearError(503, "cannot reach its session store"),
    "identity_provider_unavailable": ClearError(503, "Microsoft sign-in is unreachable"),
    UNREACHABLE.code: ClearError(UNREACHABLE.status, UNREACHABLE.title),
    TOO_SLOW.code: ClearError(TOO_SLOW.status, TOO_SLOW.title),
    "login_required": ClearError(401, "Sign-in required"),
    "forbidden": ClearError(403, "which may not use this application"),
}
# Failures without any HTTP answer, as ``Sample.error`` names them.
REFUSED, DROPPED, TRUNCATED, NO_ANSWER = "refused", "dropped", "truncated", "no answer in time"

OK = (200, None)
LOGIN_REQUIRED = (401, "login_required")
FORBIDDEN = (403, "forbidden")
REDIRECT = (302, None)

BEFORE, FAULT, RECOVERING, RECOVERED = "before", "fault", "recovering", "recovered"


@dataclass(frozen=True)
class Client:
    """One looping client: what it sends, and what it normally gets back.

    ``user`` is who a 200 must identify (None: a 200 must identify nobody). ``normal`` are the
    (status, error) outcomes expected while nothing is broken; ``location`` the prefix a redirect must
    have.
    """

    name: str
    path: str
    cookie: str | None = None
    html: bool = False
    user: str | None = None
    normal: frozenset[tuple[int, str | None]] = frozenset({OK})
    location: str | None = None


@dataclass
class Sample:
    """One answer (or the lack of one)."""

    client: Client
    phase: str  # when the request was sent
    end_phase: str  # when its answer (or failure) came back
    status: int | None
    error: str | None
    user: str | None
    location: str | None
    body: str
    seconds: float

    @property
    def outcome(self) -> tuple[int | None, str | None]:
        """(status, error): what ``Client.normal`` lists."""
        return self.status, self.error

    def __str__(self) -> str:
        return (
            f"[{self.phase}..{self.end_phase}] {self.client.name} GET {self.client.path} -> "
            f"{self.status} {self.error} user={self.user} location={self.location} "
            f"in {self.seconds:.2f}s: {self.body[:200]!r}"
        )


def session_cookie(browser: aiohttp.ClientSession) -> str:
    """The broker session cookie a logged-in test browser holds, as a ``Cookie`` header value."""
    cookie = next(c for c in browser.cookie_jar if c.key in ("broker", "__Host-broker"))
    return f"{cookie.key}={cookie.value}"


def forged_cookie() -> str:
    """A well-formed ticket the store never issued: it must only ever be refused."""
    return f"broker={format_ticket(SealKey.new())}"


def standard_clients(adele: str, megan: str, path: str = "/", login_code: str = "contoso") -> list[Client]:
    """The same crowd on a route that only ``login_code`` may use: Adele (allowed, JSON and HTML), Megan
    (another company: 403), anonymous clients (401 / redirect to the login), a forged ticket (401) and
    an anonymous client of the public route ``/open/``."""
    return [
        Client("adele-json", path, adele, user=ADELE.username),
        Client("adele-html", path, adele, html=True, user=ADELE.username),
        Client("megan-json", path, megan, normal=frozenset({FORBIDDEN})),
        Client("anonymous-json", path, normal=frozenset({LOGIN_REQUIRED})),
        Client(
            "anonymous-html",
            path,
            html=True,
            normal=frozenset({REDIRECT}),
            location=f"/.auth/login/{login_code}",
        ),
        Client("forged-json", path, forged_cookie(), normal=frozenset({LOGIN_REQUIRED})),
        Client("public-json", "/open/x"),
    ]


def _error_named(status: int, text: str, data: Any, html: bool) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    if status < 400 or not html:
        return None
    for code, clear in CLEAR_ERRORS.items():
        if clear.page_words in text:
            return code
    return "unexplained page"


def _user_named(status: int, text: str, data: Any) -> str | None:
    """Who the upstream was told about: its ``X-Remote-User`` (JSON), or a known user on an HTML page."""
    if status != 200:
        return None
    if isinstance(data, dict):
        headers = data.get("headers")
        if isinstance(headers, dict):
            user = headers.get("X-Remote-User")
            return str(user) if user is not None else None
        return None
    return next((user for user in KNOWN_USERS if user in text), None)


class Traffic:
    """Clients looping requests against one gateway until the ``async with`` block ends."""

    def __init__(
        self,
        base_url: str,
        clients: Iterable[Client],
        *,
        faults: Iterable[str] = (),
        no_answer: Iterable[str] = (),
        no_answer_phases: Iterable[str] = (FAULT, RECOVERING),
        pause: float = 0.03,
        request_timeout: float = 20.0,
        fresh_connections: bool = False,
    ) -> None:
        self.base_url = base_url
        self.clients = list(clients)
        # What the scenario allows (see ``problems``); any other answer fails the test as soon as it comes.
        self.faults = frozenset(faults)
        self.no_answer = frozenset(no_answer)
        self.no_answer_phases = frozenset(no_answer_phases)
        self._checked = 0
        self.pause = pause
        self.request_timeout = request_timeout
        self.fresh_connections = fresh_connections
        self.phase = BEFORE
        self.samples: list[Sample] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Traffic:
        self._tasks = [asyncio.create_task(self._loop(c), name=f"traffic-{c.name}") for c in self.clients]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _loop(self, client: Client) -> None:
        headers = {"Accept": "text/html" if client.html else "application/json"}
        if client.cookie:
            headers["Cookie"] = client.cookie
        connector = aiohttp.TCPConnector(force_close=self.fresh_connections)
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        async with aiohttp.ClientSession(
            headers=headers, connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
        ) as http:
            while not self._stop.is_set():
                self.samples.append(await self._one(http, client))
                await asyncio.sleep(self.pause)

    async def _one(self, http: aiohttp.ClientSession, client: Client) -> Sample:
        phase, started = self.phase, time.monotonic()

        def failed(error: str, body: str = "") -> Sample:
            seconds = time.monotonic() - started
            return Sample(client, phase, self.phase, None, error, None, None, body, seconds)

        try:
            async with http.get(self.base_url + client.path, allow_redirects=False) as resp:
                status, location = resp.status, resp.headers.get("Location")
                try:
                    text = await resp.text()
                except aiohttp.ClientPayloadError as exc:
                    return failed(TRUNCATED, f"{status} then {type(exc).__name__}")
        except aiohttp.ClientConnectorError as exc:
            return failed(REFUSED, str(exc))
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            return failed(DROPPED, f"{type(exc).__name__}: {exc}")
        except TimeoutError:
            return failed(NO_ANSWER)
        data: Any = None
        if not client.html or "json" in resp.headers.get("Content-Type", ""):
            with contextlib.suppress(ValueError):
                data = await resp.json(content_type=None)
        return Sample(
            client,
            phase,
            self.phase,
            status,
            _error_named(status, text, data, client.html),
            _user_named(status, text, data),
            location,
            text,
            time.monotonic() - started,
        )

    def summary(self) -> str:
        """How many answers of each kind each client got, by phase (printed; shown with ``pytest -s``)."""
        counts = Counter((s.client.name, s.phase, s.status, s.error) for s in self.samples)
        return "\n".join(
            f"{n:5} {name} [{phase}] {status} {error}"
            for (name, phase, status, error), n in sorted(
                counts.items(), key=lambda item: tuple(map(str, item[0]))
            )
        )

    def of(self, name: str, phase: str | None = None) -> list[Sample]:
        """The samples of one client (in one phase)."""
        return [s for s in self.samples if s.client.name == name and phase in (None, s.phase)]

    def errors(self, error: str, phase: str | None = None) -> list[Sample]:
        """Samples naming ``error`` (in one phase)."""
        return [s for s in self.samples if s.error == error and phase in (None, s.phase)]

    async def until(
        self, condition: Callable[[], bool], what: str, timeout: float = 10.0, poll: float = 0.02
    ) -> None:
        """Wait (bounded) until ``condition()`` holds; fail with ``what`` and the last samples."""
        deadline = time.monotonic() + timeout
        while not condition():
            self.check(f"while waiting for {what}")
            if time.monotonic() > deadline:
                tail = "\n".join(str(s) for s in self.samples[-15:])
                raise AssertionError(f"{what}: not within {timeout:.0f} s; last samples:\n{tail}")
            await asyncio.sleep(poll)

    def problems(self) -> list[str]:
        """``problems`` of every sample so far, under this scenario's allowances."""
        return problems(self.samples, self.faults, self.no_answer, self.no_answer_phases)

    def check(self, context: str = "") -> None:
        """Fail at once on a bad answer among those that came since the last check."""
        new, self._checked = self.samples[self._checked :], len(self.samples)
        found = problems(new, self.faults, self.no_answer, self.no_answer_phases)
        assert not found, f"{context}: bad answer(s):\n" + "\n".join(found[:25])

    async def each_answered(self, count: int = 2, phase: str | None = None, timeout: float = 10.0) -> None:
        """Every client has finished ``count`` more requests started in ``phase`` (default: the current)."""
        phase = phase or self.phase
        start = {c.name: len(self.of(c.name, phase)) for c in self.clients}
        await self.until(
            lambda: all(len(self.of(c.name, phase)) >= start[c.name] + count for c in self.clients),
            f"every client answered {count} times in phase {phase}",
            timeout,
        )

    async def fault_seen(self, error: str, timeout: float = 10.0, clients: Iterable[str] = ()) -> None:
        """Wait until a request sent during the fault was answered with ``error`` (for each of ``clients``,
        when given)."""
        names = set(clients)

        def seen() -> bool:
            answered = {s.client.name for s in self.errors(error, FAULT)}
            return bool(answered) and names <= answered

        await self.until(seen, f"a {error} answer in the fault (for {sorted(names)})", timeout)

    async def recover(self, timeout: float = 10.0, count: int = 3) -> None:
        """After the fault is removed: wait until every client gets its normal answer again, then collect
        ``count`` more answers per client in the ``recovered`` phase (``problems`` holds them to normal)."""
        self.phase = RECOVERING

        def back() -> bool:
            return all(any(s.outcome in c.normal for s in self.of(c.name, RECOVERING)) for c in self.clients)

        await self.until(back, "every client back to its normal answer", timeout)
        self.phase = RECOVERED
        await self.each_answered(count, RECOVERED, timeout)


def problems(
    samples: Iterable[Sample],
    faults: Iterable[str] = (),
    no_answer: Iterable[str] = (),
    no_answer_phases: Iterable[str] = (FAULT, RECOVERING),
) -> list[str]:
    """Every sample that broke a rule (see the module docstring), explained; empty when all is well.

    ``faults`` are the clear errors allowed before recovery; ``no_answer`` the failures without an HTTP
    answer allowed, and only in ``no_answer_phases``.
    """
    allowed_faults, allowed_silence, silent_phases = set(faults), set(no_answer), set(no_answer_phases)
    found = []
    for s in samples:
        why = None
        # A request overlaps the fault if it was sent or answered while the fault was on.
        overlapping = {s.phase, s.end_phase}
        if s.status == 500 or "Traceback" in s.body:
            why = "a 500 or a stack trace"
        elif s.status is None:
            if s.error not in allowed_silence or not overlapping & silent_phases:
                why = "no HTTP answer"
        elif s.outcome not in s.client.normal:
            clear = CLEAR_ERRORS.get(s.error or "")
            if s.error not in allowed_faults or clear is None or clear.status != s.status:
                why = "not the client's normal answer, nor a clear error this fault allows"
            elif not overlapping & {FAULT, RECOVERING}:
                why = f"{s.error} outside the fault"
        if why is None and s.status == 200 and s.user != s.client.user:
            why = f"identified {s.user!r} instead of {s.client.user!r}"
        if why is None and s.status in (301, 302, 303, 307) and s.client.location is not None:
            if not (s.location or "").startswith(s.client.location):
                why = f"redirected elsewhere than {s.client.location}"
        if why is not None:
            found.append(f"{why}: {s}")
    return found


def assert_clean(traffic: Traffic, minimum: int = 3) -> None:
    """No sample broke a rule (``problems``), and every client was heard at least ``minimum`` times."""
    print(traffic.summary())
    found = traffic.problems()
    assert not found, f"{len(found)} bad answer(s) of {len(traffic.samples)}:\n" + "\n".join(found[:25])
    for client in traffic.clients:
        assert len(traffic.of(client.name)) >= minimum, f"{client.name} barely ran"


class OffsetClock:
    """Real time plus an offset the test moves forward (shared by the gateway and the dev IdP)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


# --- Servers that really stop and start -----------------------------------------------------------------


class PersistentRedis:
    """A redis-server that keeps its port across restarts, whose append-only file is fsync'd before each
    write is acknowledged (``appendfsync always``), so what it acknowledged survives even a SIGKILL and a
    restart."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0  # chosen at the first start
        self.procs = Processes(workdir)
        self.pid = 0

    @property
    def url(self) -> str:
        """Its URL (once started)."""
        assert self.port, "start() it first"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start on a port nobody else has or, again, on the same port and directory; returns once it
        answers as itself. (A restart cannot move: the port is in the gateway's config. Between a stop and
        a restart only another server could take it; candidate ports are never a client socket's own.)"""

        def argv(port: int) -> list[str]:
            return server_argv(port, self.workdir / "data", appendonly="yes", appendfsync="always")

        if not self.port:
            self.port = self.procs.start_on_some_port(lambda _: "redis", argv)
            self.pid = self.procs.pid("redis")
            return
        self.pid = self.procs.start("redis", argv(self.port)).pid
        wait_until(
            "redis-server answers as itself", lambda: redis_answers_as(self.port, self.pid), self.procs
        )

    def kill(self) -> None:
        """SIGKILL: a crash, no SHUTDOWN, nothing written on the way out."""
        self.procs.kill("redis")

    def pause(self) -> None:
        """SIGSTOP: the process is there, its port accepts connections (the kernel queues them), but it
        answers nothing: Redis "too slow", as under a long fork, swap storm or stuck disk."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: it answers again, queued commands first."""
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM (after a SIGCONT, should the test have paused it)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGCONT)
        self.procs.stop_all()


async def stop_idp_keeping_state(stack: Stack) -> DevIdp:
    """Really stop the dev IdP (its port refuses connections) and return its state (keys, grants,
    counters), so ``start_idp_with_state`` brings back the same IdP, as Entra comes back after an outage
    still knowing its keys and the refresh tokens it issued."""
    assert stack.idp_runner is not None and stack.idp_runner.app is not None
    state = stack.idp_runner.app[DEVIDP]
    await stack.stop_idp()
    return state


async def start_idp_with_state(stack: Stack, state: DevIdp) -> None:
    """Start the dev IdP again on its port with the state ``stop_idp_keeping_state`` returned."""
    app = create_devidp_app(stack.idp_directory, stack.idp_url, clock=stack.clock, keys=state.keys)
    app[DEVIDP] = state
    stack.idp_runner = await serve(app, stack.held_idp_port())


_HEADER = re.compile(rb"^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$")


@dataclass
class FlakyUpstream:
    """A raw TCP HTTP/1.1 server on a held loopback port that a test can make refuse (port closed),
    reset (accept, read the request, then RST) or hang (accept, read, never answer).

    While ``ok`` it answers like the whoami app's JSON (``{"headers": {...}}``, the request headers it
    received), one request per connection.
    """

    port: HeldPort  # held by the test: refused while stopped, and nobody else's
    mode: str = "ok"
    _server: asyncio.Server | None = None
    _connections: set[asyncio.StreamWriter] = field(default_factory=set)
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        """Its base URL."""
        return self.port.url

    async def start(self, mode: str = "ok") -> None:
        """Listen (again) on the port."""
        self.mode, self._release = mode, asyncio.Event()
        self._server = await asyncio.start_server(self._handle, sock=self.port.listener())

    async def stop(self) -> None:
        """Close the listener and every connection: the port refuses connections afterwards."""
        self._release.set()
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections):
            writer.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if self.mode == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()  # with SO_LINGER 0: an RST, not a FIN
                return
            if self.mode == "hang":
                await self._release.wait()
                return
            headers = {}
            for line in head.split(b"\r\n")[1:]:
                match = _HEADER.match(line)
                if match:
                    headers[match.group(1).decode().title()] = match.group(2).decode()
            body = json.dumps({"headers": headers}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
            writer.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._connections.discard(writer)

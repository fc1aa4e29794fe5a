"""Complete logins per second through the dev IdP, and who spends the CPU (issue 7).

One login, as a browser does it (each with a fresh cookie jar):

  1. company page   GET  {gateway}/.auth/login/{code}           200, has the "Sign in with Microsoft" link
  2. start          GET  {gateway}/.auth/login/{code}/start     302 to the IdP, sets the login-binding cookie
  3. sign-in page   GET  {idp}/{tenant}/oauth2/v2.0/authorize   200, the account picker
  4. pick user      POST the picker's form for --user           200, the auto-submitted form_post page
  5. callback       POST {gateway}/.auth/callback               303, sets the session cookie
  6. first request  GET  {gateway}/ with the session cookie     200 from the backend

``--concurrency`` simulated browsers loop over fresh logins for ``--seconds``; logins in flight at the end
are completed and counted (the rate is over the time until the last one ends). Prints logins/s, p50/p99
of a whole login, the mean time per step, errors per step, and the CPU seconds (utime + stime from
/proc/PID/stat, children included) of every ``--pid NAME=PID`` given, of this load client, and of the
whole machine (/proc/stat), so the bottleneck can be named; every ``--every`` seconds a timeline line
gives the rate and each part's CPU share and CPU ms per login over that interval (a cost per login that
grows during the run shows there). Exits 1 if any login failed. Normally started by bench/login_rate.sh,
which starts Redis, nginx, the dev IdP and a 2-worker gateway and passes their PIDs:

    bench/login_rate.sh [--concurrency 32] [--seconds 20] [--every 5]
    .venv/bin/python bench/login_rate.py --gateway http://localhost:8080 [--code contoso]
        [--user adele@contoso.example] [--pid gateway=PID --pid devidp=PID ...]

The client is lean on purpose: one shared aiohttp connector (keep-alive, ``limit_per_host`` =
concurrency), cookies kept by hand (a dict per login, no CookieJar), and the two HTML forms read with
``login.forms_fast`` (regular expressions), checked once against the ``HTMLParser`` version before the
run. Every host resolves to 127.0.0.1: nothing leaves the loopback interface. The gateway sees the
binding cookie on the callback POST (a browser would not send it cross-site and would first go through
the gateway's same-site re-post page, one more cheap round trip not measured here).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from login import forms, forms_fast

STEPS = ("company page", "start", "sign-in page", "pick user", "callback", "first request")
BACKEND_MARK = "Hello from the nginx backend."
_START = re.compile(r'href="([^"]*/start[^"]*)"')
CLK_TCK = os.sysconf("SC_CLK_TCK")


class _Loopback(AbstractResolver):
    """Every name is 127.0.0.1 (the gateway's public URL says ``localhost``; it listens on IPv4 only)."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


class StepFailed(Exception):
    def __init__(self, step: int, message: str) -> None:
        super().__init__(message)
        self.step = step


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=lambda: [0.0] * len(STEPS))
    step_count: list[int] = field(default_factory=lambda: [0] * len(STEPS))
    errors: list[int] = field(default_factory=lambda: [0] * len(STEPS))
    first_error: dict[int, str] = field(default_factory=dict)


class Browser:
    """One login's worth of browser state: the gateway's cookies (the dev IdP sets none)."""

    def __init__(self, http: aiohttp.ClientSession, stats: Stats, gateway_origin: str) -> None:
        self.http = http
        self.stats = stats
        self.gateway_origin = gateway_origin
        self.cookies: dict[str, str] = {}

    async def call(
        self,
        step: int,
        method: str,
        url: str,
        expect: int,
        data: dict[str, str] | None = None,
    ) -> tuple[str, str]:
        """One request; returns (body, Location). Gateway cookies are sent and kept, like a browser's."""
        headers = {"Accept": "text/html"}
        to_gateway = url.startswith(self.gateway_origin)
        if to_gateway and self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        t0 = time.perf_counter()
        try:
            async with self.http.request(
                method, url, data=data, headers=headers, allow_redirects=False
            ) as resp:
                # Always read the body, even of a redirect, so the connection goes back to the pool.
                body = await resp.text(errors="replace")
                if resp.status != expect:
                    raise StepFailed(step, f"HTTP {resp.status} (expected {expect}) at {url}\n{body[:300]}")
                if to_gateway:
                    for name, morsel in resp.cookies.items():
                        if morsel.value and morsel["max-age"] != "0":
                            self.cookies[name] = morsel.value
                        else:
                            self.cookies.pop(name, None)
                location = resp.headers.get("Location", "")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise StepFailed(step, f"{type(exc).__name__}: {exc} at {url}") from exc
        self.stats.step_seconds[step] += time.perf_counter() - t0
        self.stats.step_count[step] += 1
        return body, location


def pick_user(page: str, username: str, parse: Any = forms_fast) -> tuple[str, dict[str, str]] | None:
    for action, _, fields in parse(page):
        if fields.get("username") == username:
            return action, fields
    return None


async def login_once(http: aiohttp.ClientSession, stats: Stats, args: argparse.Namespace) -> None:
    """One complete login; raises StepFailed naming the step that went wrong."""
    gw = args.gateway
    b = Browser(http, stats, gw)
    page, _ = await b.call(0, "GET", f"{gw}/.auth/login/{args.code}", 200)
    link = _START.search(page)
    if not link:
        raise StepFailed(0, "company page has no start link")
    _, authorize = await b.call(1, "GET", urljoin(gw + "/", unescape(link.group(1))), 302)
    if not authorize:
        raise StepFailed(1, "start answered without a Location")
    page, _ = await b.call(2, "GET", authorize, 200)
    chosen = pick_user(page, args.user)
    if chosen is None:
        raise StepFailed(2, f"sign-in page has no form for {args.user}")
    page, _ = await b.call(3, "POST", urljoin(authorize, chosen[0]), 200, chosen[1])
    posted = forms_fast(page)
    if not posted or "code" not in posted[0][2]:
        raise StepFailed(3, f"no form_post page with a code:\n{page[:300]}")
    callback, _, fields = posted[0]
    _, back = await b.call(4, "POST", urljoin(authorize, callback), 303, fields)
    if not any(k.endswith("broker") for k in b.cookies):
        raise StepFailed(4, "callback set no session cookie")
    page, _ = await b.call(5, "GET", urljoin(gw + "/", back or "/"), 200)
    if BACKEND_MARK not in page:
        raise StepFailed(5, f"first request did not reach the backend:\n{page[:300]}")


async def check_parsers(http: aiohttp.ClientSession, args: argparse.Namespace) -> None:
    """The regex form reader must agree with HTMLParser on the real sign-in and form_post pages."""
    gw = args.gateway
    b = Browser(http, Stats(), gw)
    page, _ = await b.call(0, "GET", f"{gw}/.auth/login/{args.code}", 200)
    link = _START.search(page)
    assert link, "company page has no start link"
    _, authorize = await b.call(1, "GET", urljoin(gw + "/", unescape(link.group(1))), 302)
    sign_in, _ = await b.call(2, "GET", authorize, 200)
    chosen = pick_user(sign_in, args.user, forms)
    if forms_fast(sign_in) != forms(sign_in) or chosen is None:
        raise SystemExit("forms_fast disagrees with HTMLParser on the sign-in page, or the user is missing")
    posted, _ = await b.call(3, "POST", urljoin(authorize, chosen[0]), 200, chosen[1])
    if forms_fast(posted) != forms(posted) or not forms(posted):
        raise SystemExit("forms_fast disagrees with HTMLParser on the form_post page")


async def browser_loop(
    http: aiohttp.ClientSession, stats: Stats, args: argparse.Namespace, deadline: float
) -> None:
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        try:
            await login_once(http, stats, args)
        except StepFailed as exc:
            stats.errors[exc.step] += 1
            stats.first_error.setdefault(exc.step, str(exc))
            await asyncio.sleep(0.05)  # a failing step must not turn into a busy loop
            continue
        stats.latencies.append(time.perf_counter() - t0)


# --- CPU accounting -------------------------------------------------------------------------------------


def _ppid_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def with_descendants(pid: int, parents: dict[int, int]) -> list[int]:
    found, todo = [pid], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        todo += kids
    return found


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process (all its threads), in seconds; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat: user..steal minus idle, iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK


@dataclass
class CpuWatch:
    groups: dict[str, list[int]]
    before: dict[int, float] = field(default_factory=dict)
    machine_before: float = 0.0

    @classmethod
    def start(cls, named: list[tuple[str, int]]) -> CpuWatch:
        parents = _ppid_map()
        groups = {name: with_descendants(pid, parents) for name, pid in named}
        groups["load client"] = [os.getpid()]
        watch = cls(groups)
        for pids in groups.values():
            for pid in pids:
                watch.before[pid] = cpu_seconds(pid) or 0.0
        watch.machine_before = machine_busy()
        return watch

    def used(self) -> tuple[dict[str, float], float, list[str]]:
        """CPU seconds per group and of the whole machine since ``start``, and the processes gone since."""
        used: dict[str, float] = {}
        gone: list[str] = []
        for name, pids in self.groups.items():
            total = 0.0
            for pid in pids:
                now = cpu_seconds(pid)
                if now is None:
                    gone.append(f"{name} pid {pid}")
                    continue
                total += now - self.before[pid]
            used[name] = total
        return used, machine_busy() - self.machine_before, gone


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- report ---------------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def report(
    args: argparse.Namespace,
    stats: Stats,
    elapsed: float,
    groups: dict[str, list[int]],
    cpu: dict[str, float],
    machine: float,
    gone: list[str],
    load_before: str,
) -> None:
    n = len(stats.latencies)
    lat = sorted(stats.latencies)
    cpus = os.cpu_count() or 1
    print(
        f"login rate: {args.concurrency} concurrent browsers, {args.seconds:g} s "
        f"(+ logins in flight: {elapsed:.1f} s in all), {cpus} CPUs"
    )
    print(f"gateway {args.gateway}, login code {args.code}, dev IdP user {args.user}")
    print(f"load average (1/5/15 min): before {load_before}, after {loadavg()}")
    print(f"{'complete logins':<18}{n:>8}   {n / elapsed:8.1f} logins/s   (issue 7 target >= 200)")
    print(
        f"{'login latency':<18}p50 {percentile(lat, 0.50) * 1000:7.1f} ms   "
        f"p99 {percentile(lat, 0.99) * 1000:7.1f} ms   max {(lat[-1] if lat else 0) * 1000:7.1f} ms"
    )
    per_step = zip(STEPS, stats.errors, strict=True)
    print(f"{'errors':<18}{sum(stats.errors):>8}   " + ", ".join(f"{s}: {e}" for s, e in per_step))
    for step, message in sorted(stats.first_error.items()):
        print(f"  first error at {STEPS[step]}: {message}")
    print("mean time per step, ms (request sent -> response read):")
    timed = zip(STEPS, stats.step_seconds, stats.step_count, strict=True)
    print("  " + ", ".join(f"{s} {(t / c * 1000 if c else 0):.1f}" for s, t, c in timed))

    def row(label: str, seconds: float, per_login: bool = True) -> None:
        ms = f"{seconds / n * 1000:10.2f}" if per_login and n else ""
        print(f"  {label:<26}{seconds:8.1f}{seconds / elapsed * 100:12.0f}%{ms}")

    print(f"CPU seconds (utime+stime) over {elapsed:.1f} s wall; {cpus} CPUs = {elapsed * cpus:.0f} CPU s")
    print(f"  {'who':<26}{'CPU s':>8}{'% of 1 core':>13}{'ms/login':>10}")
    for name, seconds in cpu.items():
        procs = len(groups[name])
        row(f"{name} ({procs} procs)" if procs > 1 else name, seconds)
    ours = sum(cpu.values())
    row("all of the above", ours)
    row("whole machine (/proc/stat)", machine, per_login=False)
    row("others on the machine", max(0.0, machine - ours), per_login=False)
    if gone:
        print("  (exited during the run, not counted: " + ", ".join(gone) + ")")
    if n and ours:
        busiest = max(cpu, key=lambda k: cpu[k])
        print(
            f"busiest: {busiest} at {cpu[busiest] / elapsed * 100:.0f}% of one core; all parts together "
            f"{ours / n * 1000:.2f} CPU ms per login -> at most ~{cpus / (ours / n):.0f} logins/s on "
            f"{cpus} idle CPUs"
        )


async def timeline(every: float, stats: Stats, watch: CpuWatch, t0: float) -> None:
    """Every ``every`` seconds: logins/s, errors, and each part's share of one core and CPU ms per login
    over that interval (a part whose cost per login grows over the run shows up here)."""
    if every <= 0:
        return
    names = list(watch.groups)
    print(f"every {every:g} s: logins/s, errors; per part: % of one core / CPU ms per login", flush=True)
    last_n, last_err, last_cpu, last_t, tick = 0, 0, dict.fromkeys(names, 0.0), 0.0, 1
    while True:
        await asyncio.sleep(max(0.0, t0 + tick * every - time.perf_counter()))
        tick += 1
        t = time.perf_counter() - t0
        cpu, _, _ = watch.used()
        n, err = len(stats.latencies), sum(stats.errors)
        dt, dn = t - last_t, max(1, n - last_n)
        spent = {name: cpu[name] - last_cpu[name] for name in names}
        shares = "  ".join(f"{k} {v / dt * 100:.0f}%/{v / dn * 1000:.2f}" for k, v in spent.items())
        print(f"  t={t:4.0f}s {(n - last_n) / dt:6.1f}/s err {err - last_err:<3} {shares}", flush=True)
        last_n, last_err, last_cpu, last_t = n, err, cpu, t


async def run(args: argparse.Namespace) -> int:
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    connector = aiohttp.TCPConnector(
        limit=0, limit_per_host=args.concurrency, resolver=_Loopback(), use_dns_cache=False
    )
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
    ) as http:
        await check_parsers(http, args)
        # Warm-up: discovery, JWKS and connections, not counted.
        warm = Stats()
        await asyncio.gather(*(login_once(http, warm, args) for _ in range(min(args.concurrency, 8))))
        stats = Stats()
        load_before = loadavg()
        watch = CpuWatch.start(args.pid)
        t0 = time.perf_counter()
        deadline = t0 + args.seconds
        ticker = asyncio.create_task(timeline(args.every, stats, watch, t0))
        await asyncio.gather(*(browser_loop(http, stats, args, deadline) for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - t0
        ticker.cancel()
        cpu, machine, gone = watch.used()
    report(args, stats, elapsed, watch.groups, cpu, machine, gone, load_before)
    return 1 if sum(stats.errors) or not stats.latencies else 0


def named_pid(text: str) -> tuple[str, int]:
    name, sep, pid = text.partition("=")
    if not sep or not pid.isdigit():
        raise argparse.ArgumentTypeError("expected NAME=PID")
    return name, int(pid)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gateway", default="http://localhost:8080", help="the gateway's public URL")
    parser.add_argument("--code", default="contoso", help="login code")
    parser.add_argument("--user", default="adele@contoso.example", help="dev IdP user to pick")
    parser.add_argument("--concurrency", type=int, default=32, help="simulated browsers (default 32)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement time (default 20)")
    parser.add_argument("--every", type=float, default=5.0, help="timeline interval, s (0: none)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument("--no-uvloop", action="store_true", help="asyncio's own loop for the client")
    parser.add_argument(
        "--pid",
        type=named_pid,
        action="append",
        default=[],
        metavar="NAME=PID",
        help="a process (and its children) whose CPU time to report; repeatable",
    )
    args = parser.parse_args()
    args.gateway = args.gateway.rstrip("/")
    if urlsplit(args.gateway).scheme not in ("http", "https"):
        parser.error("--gateway must be an http(s) URL")
    if not args.no_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(run(args))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())

"""Quick load figures for the walking skeleton: req/s and p50/p99 through the demo stack.

Starts `python -m demo` (dev IdP, whoami backend, gateway with the memory store), logs in for real through the
dev IdP, then drives a bounded closed-loop load with aiohttp against: the backend directly, a public path
through the gateway, an authenticated route, and the unauthenticated redirect. Prints a table and ratios,
then stops the demo by PID. Loopback only. Issue 7 replaces the client with wrk and adds Redis and workers.

    .venv/bin/python bench/quick_load.py [--seconds 5] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import time
from html.parser import HTMLParser
from urllib.parse import urljoin

import aiohttp

GATEWAY = "http://localhost:8080"
BACKEND = "http://127.0.0.1:9001"


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), {}))
        elif tag == "input" and self.forms and "name" in a:
            self.forms[-1][1][a["name"]] = a.get("value", "")


def forms(html: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


async def wait_ready(url: str, deadline: float) -> None:
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url} did not become ready")


async def login(username: str) -> str:
    """A real login through the dev IdP; returns the session cookie value."""
    async with aiohttp.ClientSession(headers={"Accept": "text/html"}) as b:
        async with b.get(f"{GATEWAY}/.auth/login/contoso") as r:
            start = re.search(r'href="([^"]*/start[^"]*)"', await r.text())
            assert start
        async with b.get(urljoin(GATEWAY, start.group(1)), allow_redirects=False) as r:
            authorize = r.headers["Location"]
        async with b.get(authorize) as r:
            action, fields = next(f for f in forms(await r.text()) if f[1].get("username") == username)
        async with b.post(urljoin(authorize, action), data=fields, allow_redirects=False) as r:
            callback, cb_fields = forms(await r.text())[0]
        async with b.post(callback, data=cb_fields, allow_redirects=False) as r:
            assert r.status == 303, r.status
        return next(c.value for c in b.cookie_jar if c.key == "broker")


async def load(
    url: str, seconds: float, concurrency: int, cookie: str | None, expect: int
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds
    headers = {"Accept": "text/html" if expect == 302 else "application/json"}
    if cookie:
        headers["Cookie"] = f"broker={cookie}"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                try:
                    async with http.get(url, allow_redirects=False) as resp:
                        await resp.read()
                        ok = resp.status == expect
                except aiohttp.ClientError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += 0 if ok else 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "errors": errors,
    }


async def main(seconds: float, concurrency: int) -> None:
    await wait_ready(f"{GATEWAY}/.auth/healthz", time.monotonic() + 20)
    cookie = await login("adele@contoso.example")
    targets = [
        ("backend direct", f"{BACKEND}/_demo/status/200", None, 200),
        ("gateway public path", f"{GATEWAY}/_demo/status/200", None, 200),
        # Same small backend answer as the public path, but on the enforced route: session + policy +
        # assertion signing on every request.
        ("gateway authenticated", f"{GATEWAY}/_demo/bytes?n=3", cookie, 200),
        ("whoami page, authenticated", f"{GATEWAY}/contoso-only/", cookie, 200),
        ("unauthenticated redirect", f"{GATEWAY}/contoso-only/", None, 302),
    ]
    print(f"closed loop, {concurrency} connections, {seconds:.0f} s each, aiohttp client on the same machine")
    print(f"{'target':<30}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    results: dict[str, dict[str, float]] = {}
    for name, url, ck, expect in targets:
        r = await load(url, seconds, concurrency, ck, expect)
        results[name] = r
        print(f"{name:<30}{r['rps']:>10.0f}{r['p50']:>10.1f}{r['p99']:>10.1f}{r['errors']:>8.0f}")
    ratio = results["gateway authenticated"]["rps"] / results["gateway public path"]["rps"]
    print(f"authenticated / public throughput: {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    env = {
        **os.environ,
        "CONTOSO_CLIENT_SECRET": secrets.token_urlsafe(16),
        "FABRIKAM_CLIENT_SECRET": secrets.token_urlsafe(16),
    }
    demo = subprocess.Popen(
        [sys.executable, "-m", "demo"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        asyncio.run(main(args.seconds, args.concurrency))
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=10)
        except subprocess.TimeoutExpired:
            demo.kill()

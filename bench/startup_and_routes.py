"""Start-up time with many companies and routes, and route matching cost against the number of routes.

    .venv/bin/python bench/startup_and_routes.py [--companies 100] [--routes 500] [--runs 3]

1. Start-up: generates a dev IdP directory with ``--companies`` tenants and a gateway config with as many
   companies (one per tenant, each its own client) and ``--routes`` routes spread over ten hosts, then runs
   ``python -m devidp`` and ``broker run`` (one worker, memory store) on free loopback ports and measures,
   from the moment ``broker run`` is spawned: the first answer of ``/.auth/healthz`` (serving) and the first
   200 of ``/.auth/readyz`` (every company's discovery document and keys fetched). ``--runs`` times; the
   gateway is stopped by PID after each run, the dev IdP at the end.
2. Route matching: ``RouteTable.match`` in-process on tables of 10, 100, 1,000 and 10,000 routes (same
   shape), timed over a fixed mix of hits and misses; prints nanoseconds per lookup.

Loopback only; nothing is written outside a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from broker.config.schema import RouteConfig  # noqa: E402
from broker.proxy.routing import RouteTable  # noqa: E402
from tests.support.ports import PortTaken, on_some_port, says_port_taken  # noqa: E402

BROKER = str(Path(sys.executable).parent / "broker")
HOSTS = [f"app{n}.example.test" for n in range(10)]


def route_dicts(count: int, upstream: str) -> list[dict[str, object]]:
    """``count`` routes over ten hosts, each host with nested prefixes (/svcN/, /svcN/api/), some public."""
    routes: list[dict[str, object]] = []
    for n in range(count):
        host = HOSTS[n % len(HOSTS)]
        depth = "/api" if n % 3 == 0 else ""
        route: dict[str, object] = {"host": host, "path": f"/svc{n}{depth}/", "upstream": upstream}
        if n % 5 == 0:
            route["auth"] = "public"
        routes.append(route)
    return routes


def write_configs(work: Path, companies: int, routes: int) -> tuple[Path, Callable[[str, int], Path]]:
    """The dev IdP's config file, and how to write the gateway's for the IdP's URL and the port it is to
    listen on."""
    tenants = []
    gateway_tenants: dict[str, dict[str, str]] = {}
    for n in range(companies):
        tid, client = str(uuid.UUID(int=n + 1)), str(uuid.UUID(int=10_000 + n))
        tenants.append(
            {
                "tenant_id": tid,
                "display_name": f"Company {n}",
                "domains": [f"c{n}.example"],
                "clients": [
                    {
                        "client_id": client,
                        "client_secret": "${BENCH_SECRET}",
                        "redirect_uris": ["http://localhost/.auth/callback"],  # localhost: any port
                    }
                ],
                "users": [
                    {"oid": str(uuid.UUID(int=20_000 + n)), "name": "U", "username": f"u@c{n}.example"}
                ],
            }
        )
        gateway_tenants[f"company-{n}"] = {
            "display_name": f"Company {n}",
            "tenant_id": tid,
            "client_id": client,
            "client_secret": "${BENCH_SECRET}",
        }
    idp_file = work / "devidp.yaml"
    idp_file.write_text(yaml.safe_dump({"tenants": tenants}))
    subprocess.run([BROKER, "keygen", "--out", str(work / "assertion.pem")], check=True, capture_output=True)

    def gateway_file(idp_url: str, gw_port: int) -> Path:
        tenants_here = {name: {**tenant, "authority": idp_url} for name, tenant in gateway_tenants.items()}
        gateway = {
            "server": {
                "public_url": f"http://localhost:{gw_port}",
                "listen": f"127.0.0.1:{gw_port}",
                "workers": 1,
            },
            "sessions": {"store": "memory"},
            "signing": {"keys": [str(work / "assertion.pem")]},
            "tenants": tenants_here,
            "routes": route_dicts(routes, "http://127.0.0.1:9"),
        }
        gw_file = work / "broker.yaml"
        gw_file.write_text(yaml.safe_dump(gateway, sort_keys=False))
        return gw_file

    return idp_file, gateway_file


def first_answer(
    url: str, want_200: bool, deadline: float, proc: subprocess.Popen[bytes], log: Path
) -> float:
    """Poll ``url`` every 5 ms; the monotonic time of the first answer (any status, or 200 if asked).
    ``PortTaken`` if ``proc`` exits saying its port was taken (then it is started on another)."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = log.read_text(errors="replace")
            if says_port_taken(output):
                raise PortTaken(url)
            raise RuntimeError(f"{proc.args!r} exited:\n{output[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if not want_200 or resp.status == 200:
                    return time.monotonic()
        except urllib.error.HTTPError as exc:
            if not want_200:
                exc.close()
                return time.monotonic()
            exc.close()
        except OSError:
            pass
        time.sleep(0.005)
    raise TimeoutError(url)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure_startup(companies: int, routes: int, runs: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="broker-startup."))
    env = {**os.environ, "BENCH_SECRET": "bench-secret-value"}
    idp: subprocess.Popen[bytes] | None = None

    def start_idp(port: int) -> tuple[subprocess.Popen[bytes], str]:
        """The dev IdP on ``port``, bound at the moment of use (``PortTaken`` if someone else has it)."""
        url = f"http://127.0.0.1:{port}"
        log = work / "devidp.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "devidp",
                    "--config",
                    str(idp_file),
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--public-url",
                    url,
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            discovery = f"{url}/{uuid.UUID(int=1)}/v2.0/.well-known/openid-configuration"
            first_answer(discovery, True, time.monotonic() + 30, proc, log)
        except BaseException:
            stop(proc)
            raise
        return proc, url

    def one_run(run: int) -> tuple[float, float]:
        """Spawn a gateway on a port bound at the moment of use; (seconds to serving, to ready)."""

        def attempt(port: int) -> tuple[float, float]:
            gw_file = gateway_file(idp_url, port)  # written before the clock starts
            log_path = work / f"gateway.{run}.log"
            with log_path.open("wb") as log:
                started = time.monotonic()
                gateway = subprocess.Popen(
                    [BROKER, "run", "--config", str(gw_file)], env=env, stdout=log, stderr=log
                )
            try:
                base = f"http://127.0.0.1:{port}/.auth"
                serving = first_answer(f"{base}/healthz", False, started + 60, gateway, log_path) - started
                ready = first_answer(f"{base}/readyz", True, started + 60, gateway, log_path) - started
                return serving, ready
            finally:
                stop(gateway)

        return on_some_port(attempt)

    try:
        idp_file, gateway_file = write_configs(work, companies, routes)
        idp, idp_url = on_some_port(start_idp)
        serving, ready = [], []
        for run in range(runs):
            to_serving, to_ready = one_run(run)
            serving.append(to_serving)
            ready.append(to_ready)
        print(f"start-up, {companies} companies (each its own dev IdP tenant), {routes} routes, 1 worker:")
        stages = (("serving (/.auth/healthz answers)", serving), ("ready (/.auth/readyz 200)", ready))
        for label, times in stages:
            runs_text = ", ".join(f"{t:.3f}" for t in times)
            print(f"  spawned -> {label}: median {statistics.median(times):.3f} s (runs: {runs_text})")
    finally:
        if idp is not None:
            stop(idp)
        shutil.rmtree(work, ignore_errors=True)


def measure_matching() -> None:
    print("route matching, RouteTable.match per lookup (hits on deep and shallow prefixes, misses):")
    for count in (10, 100, 1_000, 10_000):
        table = RouteTable([RouteConfig(**r) for r in route_dicts(count, "http://u")])  # type: ignore[arg-type]
        last = count - 1
        lookups = [
            (HOSTS[last % 10] + ":8080", f"/svc{last}/x/y/z"),
            (HOSTS[0], "/svc0/api/items/42"),
            (HOSTS[3], "/nothing/here"),
            ("unknown.example.test", "/svc1/"),
        ]
        number = 20_000

        def run(table: RouteTable = table, lookups: list[tuple[str, str]] = lookups) -> None:
            for host, path in lookups:
                table.match(host, path)

        best = min(timeit.repeat(run, number=number, repeat=5))
        print(f"  {count:>6} routes: {best / (number * len(lookups)) * 1e9:7.0f} ns")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=100)
    parser.add_argument("--routes", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-startup", action="store_true", help="route matching only")
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}; {time.strftime('%Y-%m-%d')}"
    )
    if not args.skip_startup:
        measure_startup(args.companies, args.routes, args.runs)
    measure_matching()


if __name__ == "__main__":
    main()

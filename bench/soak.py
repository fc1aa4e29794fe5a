"""Soak: the bounded-load scenario of tests/scenarios/test_bounded_load.py for minutes, gateways as processes.

Starts on free loopback ports: a throw-away redis-server, the dev IdP (Contoso and Fabrikam with ``--users``
generated users) and the whoami backend in this process, and ``--gateways`` replicas of ``broker run``
(one process each, uvloop, JSON logs to files in a temp dir) sharing one config and the Redis store. Then
every simulated user logs in through the real flow and browses, alternating replicas, checking the
identity of every proxied answer and that a signed-out cookie opens nothing on any replica (the scenario
is tests/scenarios/load_scenario.py). Prints progress every 10 s and a summary: requests, errors, wrong
identities, stale sessions, logins, req/s, p50/p99, and each gateway's RSS at start and end. Stops
everything it started (by PID, also on Ctrl-C); exits 1 if anything deviated.

    .venv/bin/python bench/soak.py [--seconds 300] [--users 50] [--gateways 2] [--seed 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from broker.identity.assertion import generate_es256_pem  # noqa: E402
from demo import create_demo_app  # noqa: E402
from devidp import create_devidp_app  # noqa: E402
from tests.scenarios.load_scenario import (  # noqa: E402
    CONTOSO_ROLES,
    LoadUser,
    Tally,
    load_directory,
    run_load,
)
from tests.support.ports import HeldPort, PortTaken, on_some_port, says_port_taken  # noqa: E402
from tests.support.servers import redis_server, serve  # noqa: E402
from tests.support.stack import CONTOSO_SECRET, FABRIKAM_SECRET, gateway_config, new_session_key  # noqa: E402

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


@dataclass
class Gateway:
    """One ``broker run`` process and where it listens and logs."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def rss_mib(self) -> float | None:
        """Resident set size from /proc (None once the process is gone)."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return None

    def log_levels(self) -> dict[str, int]:
        """How many log lines of each level the process wrote."""
        counts: dict[str, int] = {}
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                level = str(json.loads(line).get("level", "?"))
            except (ValueError, AttributeError):
                level = "unparsed"
            counts[level] = counts.get(level, 0) + 1
        return counts

    def stop(self) -> None:
        """SIGTERM, wait for the graceful shutdown, SIGKILL if it does not come."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log_file.close()


def start_gateway(config_file: Path, port: int, env: dict[str, str], workdir: Path) -> Gateway:
    """``python -m broker run`` on 127.0.0.1:port with the shared config."""
    log_path = workdir / f"gateway-{port}.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "broker",
            "run",
            "--config",
            str(config_file),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        env=env,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    return Gateway(f"http://127.0.0.1:{port}", process, log_path, log_file)


def start_gateway_on_some_port(
    config_for: Callable[[int], Path], env: dict[str, str], workdir: Path
) -> Gateway:
    """``start_gateway`` on a port bound at the moment of use: on another when that one was taken (a
    single-worker gateway cannot join a port we hold); ``config_for(port)`` is the config to run with."""

    def attempt(port: int) -> Gateway:
        gateway = start_gateway(config_for(port), port, env, workdir)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            log = gateway.log_path.read_text(errors="replace")
            if '"gateway listening"' in log:
                return gateway
            if gateway.process.poll() is not None:
                gateway.stop()
                if says_port_taken(log):
                    raise PortTaken(port)
                raise RuntimeError(f"the gateway on port {port} exited:\n{log[-3000:]}")
            time.sleep(0.05)
        gateway.stop()
        raise RuntimeError(f"the gateway on port {port} did not listen within {READY_TIMEOUT:.0f} s")

    return on_some_port(attempt)


async def wait_ready(gateway: Gateway) -> None:
    """Until ``/.auth/readyz`` answers 200 (config, Redis and both companies' IdP metadata loaded)."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while time.monotonic() < deadline:
            if gateway.process.poll() is not None:
                raise SystemExit(f"gateway {gateway.url} exited early; see {gateway.log_path}")
            try:
                async with http.get(f"{gateway.url}/.auth/readyz") as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}: {await resp.text()}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = repr(exc)
            await asyncio.sleep(0.2)
    raise SystemExit(f"gateway {gateway.url} not ready after {READY_TIMEOUT:.0f} s: {last}")


def rss_line(gateways: list[Gateway]) -> str:
    """Each gateway's RSS in MiB."""
    return ", ".join(
        f"{g.url.rsplit(':', 1)[1]}: " + (f"{rss:.1f} MiB" if (rss := g.rss_mib()) is not None else "gone")
        for g in gateways
    )


async def soak(seconds: float, user_count: int, replicas: int, seed: int, workdir: Path) -> int:
    """Start everything, run the load, print figures, stop everything; the exit status."""
    directory, users = load_directory(user_count)
    status = 1
    this = asyncio.current_task()
    if this is not None:  # SIGTERM unwinds like Ctrl-C: every finally below stops what it started
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, this.cancel)
    with redis_server(workdir) as (redis_url, _redis, _port):
        idp_port, backend_port = HeldPort(), HeldPort()  # in-process servers: held until the end
        idp_url, backend_url = idp_port.url, backend_port.url
        key_file = workdir / "assertion.pem"
        key_file.write_bytes(generate_es256_pem())
        key_file.chmod(0o600)
        config_file = workdir / "gateway.yaml"

        def config_for(first_gateway_port: int) -> Path:
            """The shared config; its public URL is the first gateway's, whose port is known only then."""
            raw = gateway_config(first_gateway_port, idp_url, backend_url, redis_url, key_file)
            raw["tenants"]["contoso"]["roles"] = CONTOSO_ROLES
            config_file.write_text(yaml.safe_dump(raw))
            return config_file

        env = {
            **os.environ,
            "TEST_CONTOSO_SECRET": CONTOSO_SECRET,
            "TEST_FABRIKAM_SECRET": FABRIKAM_SECRET,
            "TEST_SESSION_KEY": new_session_key(),  # the Redis store's server key (required)
            "PYTHONPATH": str(REPO),
        }
        gateways: list[Gateway] = []
        async with AsyncExitStack() as servers:
            servers.callback(idp_port.close)
            servers.callback(backend_port.close)
            idp = await serve(create_devidp_app(directory, idp_url), idp_port)
            servers.push_async_callback(idp.cleanup)
            try:
                gateways.append(start_gateway_on_some_port(config_for, env, workdir))
                public_url = gateways[0].url
                for _ in range(replicas - 1):
                    gateways.append(start_gateway_on_some_port(lambda _: config_file, env, workdir))
                backend = await serve(
                    create_demo_app(f"{public_url}/.auth/jwks.json", public_url, None), backend_port
                )
                servers.push_async_callback(backend.cleanup)
                for gateway in gateways:
                    await wait_ready(gateway)
                status = await drive(gateways, idp_url, users, seconds, seed)
            finally:
                for gateway in gateways:
                    gateway.stop()
    return status


async def drive(
    gateways: list[Gateway], idp_url: str, users: list[LoadUser], seconds: float, seed: int
) -> int:
    """Run the scenario with progress lines; print the summary; 0 if nothing deviated."""
    print(
        f"soak: {len(users)} users, {len(gateways)} gateway processes sharing Redis, {seconds:.0f} s, "
        f"seed {seed}; machine: {os.cpu_count()} CPUs; everything on 127.0.0.1"
    )
    rss_start = {g.url: g.rss_mib() for g in gateways}
    print(f"gateway RSS at start: {rss_line(gateways)}")
    began = time.monotonic()

    def progress(tally: Tally) -> None:
        print(
            f"[{time.monotonic() - began:5.0f} s] {tally.requests} requests, {tally.logins} logins, "
            f"{tally.logouts} logouts, problems {tally.problems}; RSS {rss_line(gateways)}",
            flush=True,
        )

    tally = await run_load(
        [g.url for g in gateways],
        idp_url,
        users,
        seconds,
        seed=seed,
        progress=progress,
    )
    elapsed = time.monotonic() - began
    print(f"summary: {tally.summary(elapsed)}")
    for gateway in gateways:
        start = rss_start[gateway.url]
        end = gateway.rss_mib()
        alive = "running" if gateway.process.poll() is None else f"EXITED {gateway.process.returncode}"
        print(
            f"gateway {gateway.url}: {alive}; RSS start {start or 0:.1f} MiB, end {end or 0:.1f} MiB; "
            f"log lines by level {gateway.log_levels()}"
        )
    for sample in tally.samples:
        print(f"  {sample}")
    healthy = all(g.process.poll() is None for g in gateways)
    return 0 if tally.problems == 0 and healthy else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=300.0, help="how long the load runs (default 300)")
    parser.add_argument("--users", type=int, default=50, help="simulated users, split over 2 companies")
    parser.add_argument("--gateways", type=int, default=2, help="gateway processes sharing Redis")
    parser.add_argument("--seed", type=int, default=8, help="seed of the users' random choices")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="broker-soak-") as tmp:
        try:
            return asyncio.run(soak(args.seconds, args.users, args.gateways, args.seed, Path(tmp)))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("interrupted; everything started was stopped")
            return 130


if __name__ == "__main__":
    raise SystemExit(main())

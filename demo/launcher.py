"""``python -m demo`` (``make demo``): the dev IdP, the whoami backend and the gateway in one process.

Stopped by Ctrl-C. It lives with the demo, not in ``broker``: the gateway package never imports the dev
identity provider or the demo, so the production image can leave them out.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import errno
import os
import secrets
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from broker.app import create_app
from broker.config.load import load_config
from broker.config.schema import BrokerConfig, TenantConfig
from broker.identity.assertion import generate_es256_pem
from broker.ops.logging import configure_logging
from broker.server.connection_limits import GuardedTCPSite
from broker.server.serve import serve_guarded
from demo import create_demo_app
from devidp import DevIdpConfig, DevUser, create_devidp_app, load_devidp_config

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class DemoPort:
    """One of the demo's three ports: its default, and the flag and variable that choose another."""

    role: str
    default: int
    flag: str
    variable: str


GATEWAY_PORT = DemoPort("the gateway", 8080, "--gateway-port", "BROKER_DEMO_GATEWAY_PORT")
IDP_PORT = DemoPort("the dev identity provider", 9000, "--idp-port", "BROKER_DEMO_IDP_PORT")
BACKEND_PORT = DemoPort("the demo backend", 9001, "--backend-port", "BROKER_DEMO_BACKEND_PORT")
DEMO_PORTS = (GATEWAY_PORT, IDP_PORT, BACKEND_PORT)


class PortBusy(Exception):
    """A demo port is taken by another program: one line says which and how to choose another."""

    def __init__(self, port: DemoPort, number: int) -> None:
        super().__init__(
            f"port {number} ({port.role}) is already in use: stop what uses it, or choose another port "
            f"with `python -m demo {port.flag} N` (or {port.variable}=N make demo)"
        )


async def serve(
    app: web.Application, config: BrokerConfig, port: DemoPort, number: int, host: str = LOOPBACK
) -> tuple[web.AppRunner, GuardedTCPSite]:
    """Serve one of the demo's apps through the connection guard of ``broker run`` (header timeout,
    connection cap, keep-alive from the gateway's config): a slow client is bounded in ``make demo`` too.
    A taken port is one clear line (``PortBusy``), never a traceback."""
    try:
        return await serve_guarded(app, config, host, number)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortBusy(port, number) from None
        raise


async def run_demo(config_path: Path, idp_config_path: Path) -> int:
    """Start all three servers, print where to go, and run until interrupted."""
    # demo.yaml reads the three ports from BROKER_DEMO_*_PORT (set by ``main`` from the flags).
    config = load_config(config_path)
    idp_config = load_devidp_config(idp_config_path)
    public_url = config.server.public_url.rstrip("/")
    host, _, port = config.server.listen.rpartition(":")
    idp_port, backend_port = _port(IDP_PORT), _port(BACKEND_PORT)
    idp_url = f"http://localhost:{idp_port}"
    runners: list[web.AppRunner] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        runners.append((await serve(create_devidp_app(idp_config, idp_url), config, IDP_PORT, idp_port))[0])
        backend = create_demo_app(f"http://127.0.0.1:{port}/.auth/jwks.json", public_url, None)
        runners.append((await serve(backend, config, BACKEND_PORT, backend_port))[0])
        gateway = create_app(config, config_path.parent)
        runners.append((await serve(gateway, config, GATEWAY_PORT, int(port), host))[0])
        _print_welcome(public_url, config.tenants, idp_config, idp_url, backend_port)
        await stop.wait()
        print("\nstopping ...")
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
    return 0


def _port(port: DemoPort) -> int:
    return int(os.environ.get(port.variable, port.default))


def _describe(user: DevUser) -> str:
    """What signing in as this demo user shows: their app roles, or the failure they are set up for."""
    if user.token_fault:
        return f"test: broken ID token ({user.token_fault}), refused by the gateway"
    if user.authorize_error:
        return f"test: Entra answers AADSTS{user.authorize_error}"
    return ", ".join(user.roles) or "no app roles (default role)"


def _print_welcome(
    public_url: str,
    tenants: Mapping[str, TenantConfig],
    idp_config: DevIdpConfig,
    idp_url: str,
    backend_port: int,
) -> None:
    host = urlsplit(public_url).netloc
    print()
    print("Entra Broker demo is running (Ctrl-C stops everything)")
    print(f"  gateway           {public_url}/            (whoami app behind it)")
    for code in tenants:
        print(f"  {code:<17} {public_url}/.auth/login/{code}")
    print(f"  company chooser   {public_url}/.auth/login")
    print(f"  dev identity provider  {idp_url}   demo backend (direct)  http://127.0.0.1:{backend_port}")
    print("\nDemo users (click one on the dev IdP's sign-in page):")
    for tenant in idp_config.tenants:
        for user in tenant.users:
            print(f"  {tenant.display_name:<12} {user.name:<18} {user.username:<26} {_describe(user)}")
    print(f"\nTry: open {public_url}/ , sign in as a Contoso user, see your identity on the whoami page;")
    print(f"     then sign out at {public_url}/.auth/logout (host {host}).\n")
    for line in api_curl_lines(public_url, idp_config, idp_url):
        print(line)


def api_curl_lines(public_url: str, idp_config: DevIdpConfig, idp_url: str) -> list[str]:
    """A curl line that gets an app-only token from the dev IdP and calls the demo API with it."""
    for tenant in idp_config.tenants:
        for api_client in tenant.clients:
            if api_client.api is None:
                continue
            for caller_id in api_client.api.app_roles:
                caller = tenant.find_client(caller_id)
                if caller is None:
                    continue
                token_url = f"{idp_url}/{tenant.tenant_id}/oauth2/v2.0/token"
                scope = f"{api_client.api.app_id_uri}/.default"
                return [
                    "Call the API as an application (client credentials):",
                    f"  TOKEN=$(curl -s {token_url} -d grant_type=client_credentials "
                    f"-d client_id={caller_id} -d client_secret={caller.client_secret} -d scope={scope} "
                    "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
                    f'  curl -H "Authorization: Bearer $TOKEN" -H "Accept: application/json" '
                    f"{public_url}/api/",
                    "",
                ]
    return []


def build_parser() -> argparse.ArgumentParser:
    """The demo's options: the gateway's config and the dev IdP's directory."""
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--config", default="config/demo.yaml", help="gateway config (default %(default)s)")
    parser.add_argument("--idp-config", default="config/devidp.yaml", help="dev IdP directory (%(default)s)")
    for port in DEMO_PORTS:
        parser.add_argument(
            port.flag,
            type=port_number,
            metavar="N",
            help=f"port of {port.role} (default ${port.variable} or {port.default})",
        )
    return parser


def port_number(text: str) -> int:
    """A TCP port from a flag or variable (1-65535); ValueError otherwise."""
    number = int(text)
    if not 0 < number < 65536:
        raise ValueError(text)
    return number


def main(argv: Sequence[str] | None = None) -> int:
    """Dev IdP + demo backend + gateway in one process, with throw-away secrets and keys."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for port in DEMO_PORTS:
        chosen = getattr(args, port.flag.removeprefix("--").replace("-", "_"))
        if chosen is not None:
            os.environ[port.variable] = str(chosen)
        elif not port_number_or_none(os.environ.get(port.variable, str(port.default))):
            parser.error(f"{port.variable} must be a port number (1-65535)")
    # Demo secrets are random per run and shared with the dev IdP through the environment,
    # exactly as production secrets reach the gateway (never written in YAML).
    for name in ("CONTOSO_CLIENT_SECRET", "FABRIKAM_CLIENT_SECRET"):
        os.environ.setdefault(name, secrets.token_urlsafe(24))
    # The sessions' server key, as `openssl rand -base64 32` makes one.
    os.environ.setdefault("BROKER_DEMO_SESSION_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
    with tempfile.TemporaryDirectory(prefix="broker-demo-") as tmp:
        key_file = Path(tmp) / "assertion.pem"
        key_file.write_bytes(generate_es256_pem())
        key_file.chmod(0o600)
        os.environ.setdefault("BROKER_DEMO_SIGNING_KEY", str(key_file))
        with configure_logging("text"), contextlib.suppress(KeyboardInterrupt):
            try:
                return asyncio.run(run_demo(Path(args.config), Path(args.idp_config)))
            except PortBusy as exc:
                print(f"make demo: {exc}", file=sys.stderr)
                return 1
    return 0


def port_number_or_none(text: str) -> int | None:
    """``port_number``, or None for a value that is not a port."""
    try:
        return port_number(text)
    except ValueError:
        return None

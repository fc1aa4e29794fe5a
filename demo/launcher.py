"""``python -m demo`` (``make demo``): the dev IdP, the whoami backend and the gateway in one process.

Stopped by Ctrl-C. It lives with the demo, not in ``broker``: the gateway package never imports the dev
identity provider or the demo, so the production image can leave them out.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import secrets
import signal
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from broker.app import create_app
from broker.config.load import load_config
from broker.config.schema import TenantConfig
from broker.identity.assertion import generate_es256_pem
from broker.ops.logging import configure_logging
from demo import create_demo_app
from devidp import DevIdpConfig, DevUser, create_devidp_app, load_devidp_config

DEVIDP_LISTEN = ("127.0.0.1", 9000)
DEVIDP_PUBLIC_URL = "http://localhost:9000"
BACKEND_LISTEN = ("127.0.0.1", 9001)


async def _serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def run_demo(config_path: Path, idp_config_path: Path) -> int:
    """Start all three servers, print where to go, and run until interrupted."""
    config = load_config(config_path)
    idp_config = load_devidp_config(idp_config_path)
    public_url = config.server.public_url.rstrip("/")
    host, _, port = config.server.listen.rpartition(":")
    runners: list[web.AppRunner] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        runners.append(await _serve(create_devidp_app(idp_config, DEVIDP_PUBLIC_URL), *DEVIDP_LISTEN))
        backend = create_demo_app(f"http://127.0.0.1:{port}/.auth/jwks.json", public_url, None)
        runners.append(await _serve(backend, *BACKEND_LISTEN))
        runners.append(await _serve(create_app(config, config_path.parent), host, int(port)))
        _print_welcome(public_url, config.tenants, idp_config)
        await stop.wait()
        print("\nstopping ...")
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
    return 0


def _describe(user: DevUser) -> str:
    """What signing in as this demo user shows: their app roles, or the failure they are set up for."""
    if user.token_fault:
        return f"test: broken ID token ({user.token_fault}), refused by the gateway"
    if user.authorize_error:
        return f"test: Entra answers AADSTS{user.authorize_error}"
    return ", ".join(user.roles) or "no app roles (default role)"


def _print_welcome(public_url: str, tenants: Mapping[str, TenantConfig], idp_config: DevIdpConfig) -> None:
    host = urlsplit(public_url).netloc
    print()
    print("Entra Broker demo is running (Ctrl-C stops everything)")
    print(f"  gateway           {public_url}/            (whoami app behind it)")
    for code in tenants:
        print(f"  {code:<17} {public_url}/.auth/login/{code}")
    print(f"  company chooser   {public_url}/.auth/login")
    print(
        f"  dev identity provider  {DEVIDP_PUBLIC_URL}   demo backend (direct)  http://127.0.0.1:{BACKEND_LISTEN[1]}"
    )
    print("\nDemo users (click one on the dev IdP's sign-in page):")
    for tenant in idp_config.tenants:
        for user in tenant.users:
            print(f"  {tenant.display_name:<12} {user.name:<18} {user.username:<26} {_describe(user)}")
    print(f"\nTry: open {public_url}/ , sign in as a Contoso user, see your identity on the whoami page;")
    print(f"     then sign out at {public_url}/.auth/logout (host {host}).\n")
    for line in api_curl_lines(public_url, idp_config):
        print(line)


def api_curl_lines(public_url: str, idp_config: DevIdpConfig) -> list[str]:
    """A curl line that gets an app-only token from the dev IdP and calls the demo API with it."""
    for tenant in idp_config.tenants:
        for api_client in tenant.clients:
            if api_client.api is None:
                continue
            for caller_id in api_client.api.app_roles:
                caller = tenant.find_client(caller_id)
                if caller is None:
                    continue
                token_url = f"{DEVIDP_PUBLIC_URL}/{tenant.tenant_id}/oauth2/v2.0/token"
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Dev IdP + demo backend + gateway in one process, with throw-away secrets and keys."""
    args = build_parser().parse_args(argv)
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
            return asyncio.run(run_demo(Path(args.config), Path(args.idp_config)))
    return 0

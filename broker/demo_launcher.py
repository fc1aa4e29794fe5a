"""``broker demo``: the dev IdP, the whoami backend and the gateway in one process, stopped by Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from broker.app import create_app
from broker.config.load import load_config
from broker.config.schema import TenantConfig
from broker.demo import create_demo_app
from broker.devidp import DevIdpConfig, DevUser, create_devidp_app, load_devidp_config

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

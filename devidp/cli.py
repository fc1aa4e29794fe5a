"""``python -m devidp``: run the development identity provider alone on a host:port."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aiohttp import web

from broker.grammar.host import split_listen
from broker.ops.logging import configure_logging
from broker.ops.tasks import new_event_loop
from devidp.app import create_devidp_app
from devidp.loader import load_devidp_config

DEFAULT_LISTEN = "127.0.0.1:9000"


def build_parser() -> argparse.ArgumentParser:
    """The dev IdP's options: its directory (YAML), where it listens and the URL clients use."""
    parser = argparse.ArgumentParser(prog="python -m devidp", description=__doc__)
    parser.add_argument("--config", required=True, help="the directory YAML (e.g. config/devidp.yaml)")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help="host:port (default %(default)s)")
    parser.add_argument("--public-url", help="the URL browsers and the gateway use (default from --listen)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted, with options parsed by ``build_parser``."""
    with configure_logging("text"):
        host, port = split_listen(args.listen)
        try:
            config = load_devidp_config(args.config)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 1
        public_url = (
            args.public_url or f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"
        )
        app = create_devidp_app(config, public_url)
        # The dev IdP sits in every login of the benchmarks: it runs on the gateway's (fast) event loop.
        web.run_app(app, host=host, port=port, print=None, access_log=None, loop=new_event_loop())
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m devidp``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ValueError as exc:
        parser.error(str(exc))

"""``python -m demo.whoami``: serve the whoami demo backend alone on a host:port."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from aiohttp import web

from broker.grammar.host import split_listen
from demo.app import DEFAULT_ASSERTION_HEADER, create_demo_app

DEFAULT_LISTEN = "127.0.0.1:9001"


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the demo backend's options to ``parser`` (a new one when None), e.g. for a CLI subcommand."""
    parser = parser or argparse.ArgumentParser(prog="python -m demo.whoami", description=__doc__)
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help="host:port (default %(default)s)")
    parser.add_argument("--jwks-url", required=True, help="the gateway's {public_url}/.auth/jwks.json")
    parser.add_argument("--issuer", required=True, help="the gateway's public URL (the assertion's iss)")
    parser.add_argument(
        "--audience",
        action="append",
        dest="audiences",
        help="accepted aud; repeat for several; omitted: audience not checked (but shown)",
    )
    parser.add_argument("--assertion-header", default=DEFAULT_ASSERTION_HEADER)
    return parser


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted, with options parsed by ``build_parser``."""
    host, port = split_listen(args.listen)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_demo_app(args.jwks_url, args.issuer, args.audiences, args.assertion_header)
    web.run_app(app, host=host, port=port, print=None)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m demo.whoami``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ValueError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    raise SystemExit(main())

"""``broker run | check-config | entra-setup | sessions | policy | keygen``: the gateway's commands alone.

The development identity provider and the demo are not here: they are their own packages
(``python -m devidp``, ``python -m demo``), which the production image does not contain.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from broker import __version__
from broker.cli.offline_config import any_key, load_offline
from broker.config.load import load_config_with_warnings
from broker.errors import ConfigError
from broker.identity.assertion import generate_es256_pem
from broker.ops.logging import LogPipeline, command_logging, configure_logging


def _print_config_error(exc: ConfigError) -> None:
    print(f"configuration has {len(exc.problems)} problem(s):", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file; print every problem and warning; exit 0 when usable (warnings only)."""
    try:
        # CI checks the file without the production secrets: an unset variable is a warning here (the
        # gateway refuses to start without it), everything else is checked as ``broker run`` would.
        with load_offline(args.file, any_key) as loaded:
            from broker.app import prepare

            # Load what the config names on disk too (keys, certificates, TLS files): a file that exists but
            # cannot be used must fail here, not at start-up.
            prepare(loaded.config, Path(args.file).parent, args.file)
    except ConfigError as exc:
        _print_config_error(exc)
        return 1
    for warning in loaded.warnings:
        print(warning, file=sys.stderr)
    for variable in loaded.unset:
        print(variable.warning(args.file, "`broker run` needs it"), file=sys.stderr)
    config = loaded.config
    print(f"{args.file}: OK ({len(config.tenants)} companies, {len(config.routes)} routes)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the gateway until SIGTERM/SIGINT."""
    with configure_logging(args.log_format) as logs:
        return _run_gateway(args, logs)


def _run_gateway(args: argparse.Namespace, logs: LogPipeline) -> int:
    try:
        config, warnings = load_config_with_warnings(args.config)
    except ConfigError as exc:
        _print_config_error(exc)
        return 1
    for warning in warnings:
        logging.getLogger("broker.config").warning("config warning: %s", warning)
    created_metrics_dir = None
    if config.server.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # prometheus-client chooses where metric values live when it is first imported: the directory
        # shared by the workers must be set before broker.server.serve (and so prometheus_client) is imported.
        # Only a directory created here is removed at the end; one the operator set is never touched.
        created_metrics_dir = Path(tempfile.mkdtemp(prefix="broker-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(created_metrics_dir)
    from broker.server.serve import run

    try:
        return run(
            config,
            Path(args.config),
            args.listen or config.server.listen,
            created_metrics_dir=created_metrics_dir,
            logs=logs,
        )
    except ConfigError as exc:
        _print_config_error(exc)
        return 1


def cmd_entra_setup(args: argparse.Namespace) -> int:
    """Print the Entra app registration steps for one company."""
    from broker.cli.entra_setup import build_guide, render

    try:
        # The guide needs no secret: it runs where the tenants' secrets are not set (a fresh clone).
        with load_offline(args.config, any_key) as loaded:
            config = loaded.config
            code = args.code.lower()  # login codes are lower-case in the config; the admin may type "Contoso"
            if code not in config.tenants:
                known = ", ".join(sorted(config.tenants))
                print(f"unknown login code {args.code!r} (known: {known})", file=sys.stderr)
                return 1
            guide = build_guide(config, code, Path(args.config).parent)
    except ConfigError as exc:
        _print_config_error(exc)
        return 1
    for variable in loaded.unset:
        # Only this company's credential matters to its guide: the admin creates it in step 5.
        if variable.key_path.startswith(f"tenants.{code}."):
            print(variable.warning(args.config, "set it once the admin sends the secret"), file=sys.stderr)
    sys.stdout.write(render(guide, args.format))
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    """Write a new ES256 (P-256) private key for the identity assertion."""
    pem = generate_es256_pem()
    if args.out == "-":
        sys.stdout.write(pem.decode())
        return 0
    out = Path(args.out)
    if out.exists():
        print(f"{out} exists; refusing to overwrite a key", file=sys.stderr)
        return 1
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    print(f"wrote {out} (mode 600); list it under signing.keys")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line: every argument says what it is for."""
    parser = argparse.ArgumentParser(
        prog="broker", description="Entra Broker: Entra ID sign-in for legacy apps."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do (each command has its own --help)"
    )

    run = sub.add_parser("run", help="run the gateway", description="Run the gateway until SIGTERM/SIGINT.")
    run.add_argument("--config", required=True, metavar="FILE", help="the gateway's YAML config file")
    run.add_argument(
        "--listen", metavar="HOST:PORT", help="address to listen on (default: server.listen from the config)"
    )
    run.add_argument(
        "--log-format",
        choices=("json", "text"),
        default="json",
        help="json: one object a line, for log shippers; text: for a terminal (default %(default)s)",
    )
    run.set_defaults(func=cmd_run)

    check = sub.add_parser(
        "check-config",
        help="validate a config file and list every problem",
        description="Validate a config file and every file it names; list every problem and warning. "
        "Exit 0 when the gateway could start with it. Environment variables not set here are warnings.",
    )
    check.add_argument("file", metavar="FILE", help="the gateway's YAML config file to check")
    check.set_defaults(func=cmd_check_config)

    setup = sub.add_parser(
        "entra-setup",
        help="print what a company's Azure admin must configure",
        description="Print the Microsoft Entra app registration guide for one company, generated from "
        "the config. It needs none of the secrets.",
    )
    setup.add_argument("code", help="the company's login code (its key under tenants: in the config)")
    setup.add_argument("--config", required=True, metavar="FILE", help="the gateway's YAML config file")
    setup.add_argument(
        "--format",
        choices=("markdown", "json", "html"),
        default="markdown",
        help="markdown: to paste in an e-mail or ticket; json: for automation; html: a printable page "
        "(default %(default)s)",
    )
    setup.set_defaults(func=cmd_entra_setup)

    from broker.cli.sessions import add_parser as add_sessions_parser

    add_sessions_parser(sub)

    from broker.cli.policy import add_parser as add_policy_parser

    add_policy_parser(sub)

    keygen = sub.add_parser(
        "keygen",
        help="create an ES256 key for the identity assertion",
        description="Create an ES256 (P-256) private key that signs the identity assertion.",
    )
    keygen.add_argument(
        "--out",
        default="-",
        metavar="FILE",
        help="file to create (mode 600, never overwritten), or -: stdout",
    )
    keygen.set_defaults(func=cmd_keygen)
    return parser


# Commands that serve until stopped and set up their own logging (to stdout); every other command is a
# one-shot whose stdout is its output (a key, a guide, a session list): its log lines (audit events of
# ``sessions revoke``) go to stderr.
SERVING_COMMANDS = frozenset({"run"})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``broker`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logs = contextlib.nullcontext() if args.command in SERVING_COMMANDS else command_logging()
    try:
        with logs:
            result: int = args.func(args)
    except ValueError as exc:
        parser.error(str(exc))
    return result

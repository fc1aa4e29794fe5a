"""``broker sessions list|revoke``: operators find and end sessions in the shared store.

Sessions are encrypted with keys only the browsers hold (and the server keys), so the CLI works from the
indexes, whose names it computes with the configured ``sessions.secret_keys``: by company or
by user (``tid:oid``) it lists session ids with their company and times, and it revokes by id or by user.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from broker.cli.offline_config import except_sessions, load_offline
from broker.config.schema import BrokerConfig
from broker.errors import BrokerError
from broker.ops.events import audit
from broker.sessions.manager import SessionInfo, SessionManager, company_index, user_index


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``sessions list`` and ``sessions revoke``."""
    sessions = sub.add_parser(
        "sessions",
        help="list or revoke sessions in the shared session store",
        description="List or revoke sessions in the Redis session store the gateway uses. Needs the "
        "config's session keys and store URL; the tenants' secrets may be unset.",
    )
    actions = sessions.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="list or revoke (each has its own --help)"
    )
    listing = actions.add_parser("list", help="list sessions of a company or a user")
    listing.add_argument("--config", required=True, metavar="FILE", help="the gateway's YAML config file")
    who = listing.add_mutually_exclusive_group()
    who.add_argument("--company", metavar="CODE", help="only this company's sessions (its login code)")
    who.add_argument("--user", metavar="TID:OID", help="only this user's sessions (tenant and object IDs)")
    listing.set_defaults(func=cmd_sessions)
    revoke = actions.add_parser("revoke", help="revoke one session (by id) or every session of a user")
    revoke.add_argument("--config", required=True, metavar="FILE", help="the gateway's YAML config file")
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("session_id", nargs="?", help="a session id from `sessions list`")
    target.add_argument("--user", metavar="TID:OID", help="sign this user out everywhere (every session)")
    revoke.set_defaults(func=cmd_sessions)


def cmd_sessions(args: argparse.Namespace) -> int:
    """Run ``sessions list`` or ``sessions revoke``."""
    try:
        # The tenants' client secrets and the signing keys play no part here, so they may be unset where
        # the CLI runs; the session keys (index names) and the store's URL may not.
        with load_offline(args.config, except_sessions) as loaded:
            config = loaded.config
            if config.sessions.store == "memory":
                print(
                    "the memory store lives inside the gateway process; the CLI needs a Redis store",
                    file=sys.stderr,
                )
                return 2
            return asyncio.run(_run(args, config, Path(args.config).parent))
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _user(value: str) -> tuple[str, str]:
    tid, sep, oid = value.partition(":")
    if not sep or not tid or not oid:
        raise ValueError("--user must be TID:OID")
    return tid, oid


async def _run(args: argparse.Namespace, config: BrokerConfig, base_dir: Path) -> int:
    from broker.app import make_store, server_keys  # not at import time: see cli.cmd_run on prometheus_client

    # The configured server keys: index names are keyed with them (every key, for sessions under rotation).
    keys = server_keys(config)
    store = make_store(config, base_dir)
    manager = SessionManager(store, config.sessions.idle_timeout, config.sessions.lifetime, keys=keys)
    try:
        if args.action == "revoke":
            if args.user:
                count = await manager.revoke_index(user_index(*_user(args.user)))
                audit("session_revoked", who=args.user, why="operator (broker sessions revoke)", count=count)
                print(f"revoked {count} session(s) of {args.user}")
                return 0
            if await manager.revoke(args.session_id):
                audit("session_revoked", why="operator (broker sessions revoke)", session_id=args.session_id)
                print(f"revoked {args.session_id}")
                return 0
            print(f"no session {args.session_id}", file=sys.stderr)
            return 1
        if args.user:
            infos = await manager.list_index(user_index(*_user(args.user)))
        else:
            codes = [args.company] if args.company else list(config.tenants)
            infos = [info for code in codes for info in await manager.list_index(company_index(code))]
        _print(infos)
        return 0
    finally:
        await store.close()


def _print(infos: list[SessionInfo]) -> None:
    def when(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))

    print(f"{'session id':<66}{'company':<16}{'created':<22}expires")
    for info in infos:
        print(f"{info.session_id:<66}{info.login_code:<16}{when(info.created_at):<22}{when(info.expires_at)}")
    print(f"{len(infos)} session(s)")

"""``broker policy explain``: how the gateway would decide one request, offline, for an operator.

The claims file is an ID token's claims as JSON (``tid``, ``oid``, ``roles``, ``groups``, and any claim the
company keeps); the session is built from it exactly as sign-in builds it, and the route's compiled rules
are traced node by node.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

from broker.config.load import load_config
from broker.config.schema import BrokerConfig
from broker.errors import ConfigError
from broker.grammar.path_folding import fold
from broker.identity.claim_keeping import kept_claims
from broker.identity.policy import identity_from_claims, string_list
from broker.identity.policy_compiler import RoutePolicies
from broker.identity.policy_rules import RequestFacts
from broker.proxy.routing import AmbiguousRoute, RouteTable, matching_path
from broker.sessions.model import Session

MAX_CLAIMS_FILE = 1024 * 1024


def _company(config: BrokerConfig, claims: dict[str, Any], given: str | None) -> str:
    """The login code: as given, else the one company whose tenant is the token's ``tid``."""
    if given is not None:
        if given not in config.tenants:
            raise ValueError(f"unknown company {given!r} (known: {', '.join(sorted(config.tenants))})")
        return given
    tid = str(claims.get("tid", "")).lower()
    codes = [code for code, t in config.tenants.items() if t.tenant_id.lower() == tid]
    if len(codes) != 1:
        raise ValueError("cannot tell the company from the claims' tid: give --company")
    return codes[0]


def session_from_claims(config: BrokerConfig, claims: dict[str, Any], code: str) -> Session:
    """The session sign-in would build from these claims (roles mapped, claims kept and bounded)."""
    tenant = config.tenants[code]
    return Session(
        login_code=code,
        tid=str(claims.get("tid", "")),
        oid=str(claims.get("oid", "")),
        **identity_from_claims(tenant.roles, claims, string_list(claims.get("groups"))),
        claims=kept_claims(tenant.keep_claims, claims),
    )


def explain(args: argparse.Namespace) -> int:
    """Print the route, the decision, the deciding rule and every rule evaluated."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"configuration has {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    try:
        claims = json.loads(Path(args.claims).read_text(encoding="utf-8")[:MAX_CLAIMS_FILE])
    except OSError as exc:
        raise ValueError(f"cannot read {args.claims}: {exc.strerror}") from None
    if not isinstance(claims, dict):
        raise ValueError("the claims file must hold a JSON object")
    path = matching_path(args.path)
    if path is None:
        print(f"{args.path}: refused (400): an ambiguous path")
        return 2
    table = RouteTable(config.routes)
    try:
        route = table.match(args.host, path)
    except AmbiguousRoute:
        print(f"{args.path}: refused (400): another route's upstream could read this path as its own")
        return 2
    if route is None:
        print(f"{args.host}{args.path}: no route (404)")
        return 2
    print(f"route: routes[{route.index}] {route.label}")
    if route.admits_anonymous(path):
        print("decision: allow (a public path: no session needed, no rule applies)")
        return 0
    session = session_from_claims(config, claims, _company(config, claims, args.company))
    client = ipaddress.ip_address(args.ip) if args.ip else None
    facts = RequestFacts(session, args.method.upper(), fold(path, route.rules), client)
    decision, lines = RoutePolicies(table)[route.index].explain(facts)
    print(f"user: {session.user_key} company: {session.login_code} roles: {session.roles}")
    for line in lines:
        print(f"  {line}")
    verdict = "allow" if decision.allowed else "deny (403)"
    print(f"decision: {verdict} by {decision.rule or 'no rule (the route has none)'}")
    if decision.reason:
        print(f"reason shown: {decision.reason}")
    return 0 if decision.allowed else 3


def add_parser(sub: Any) -> None:
    """``broker policy explain --config F --host H --path P --claims claims.json [--ip A] [--method M]``."""
    policy = sub.add_parser("policy", help="explain route policy decisions offline")
    actions = policy.add_subparsers(dest="policy_command", required=True, help="what to do")
    command = actions.add_parser("explain", help="how a request with these claims would be decided")
    command.add_argument("--config", required=True, metavar="FILE", help="the gateway's YAML config file")
    command.add_argument("--host", required=True, help="the request's host, as the browser sends it")
    command.add_argument("--path", required=True, help="the request's path (e.g. /finance/report)")
    command.add_argument(
        "--claims", required=True, metavar="FILE", help="a JSON file of the user's ID-token claims"
    )
    command.add_argument(
        "--ip", help="the client address, as the trusted-proxy rules establish it (default: unknown)"
    )
    command.add_argument("--method", default="GET", help="the HTTP method (default %(default)s)")
    command.add_argument("--company", help="login code (default: the company of the claims' tid)")
    command.set_defaults(func=explain)

"""Cost of one policy decision against the number of rules in the config, and against the size of a list.

    .venv/bin/python bench/policy_rules.py [--number 20000]

1. Rules elsewhere: a config of 10, 100, 1,000 and 10,000 routes, each with its own deny rule (client IP
   outside the office) and two allow rules (a group; a role and a kept claim, or a path and a method). The
   request is decided on one route, reached by its index: the other routes' rules are never looked at, so
   the time per decision should stay flat.
2. Big lists: one rule whose ``group`` list has 10 ... 10,000 group IDs (compiled into a set: flat too).
3. Compile: the time to compile every route's rules once (what a config load or reload pays).

In-process, no network; prints nanoseconds per decision (best of 5 runs).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time
import timeit
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from broker.config.schema import RouteConfig  # noqa: E402
from broker.identity.policy_compiler import RoutePolicies  # noqa: E402
from broker.identity.policy_rules import RequestFacts  # noqa: E402
from broker.proxy.routing import RouteTable  # noqa: E402
from broker.sessions.model import Session  # noqa: E402

SESSION = Session(
    login_code="contoso",
    tid="t",
    oid="o",
    roles=["reader"],
    groups=[f"group-{n}" for n in range(40)],  # a user in 40 groups
    claims={"ctry": "FR"},
)
FACTS = RequestFacts(SESSION, "GET", "/svc0/reports/q1", ipaddress.ip_address("10.1.2.3"))


def route(n: int, groups: int = 5) -> dict[str, Any]:
    """A route with a deny rule and two allow rules (the first allow rule fails, the second matches)."""
    return {
        "host": "app.example.test",
        "path": f"/svc{n}/",
        "upstream": "http://10.0.0.5",
        "allow": {"login_codes": ["contoso"]},
        "policy": {
            "deny": [{"name": "outside-office", "not": {"ip": ["10.0.0.0/8", "192.168.0.0/16"]}}],
            "allow": [
                {"name": "finance", "group": [f"finance-{g}" for g in range(groups)]},
                {
                    "name": "french-readers",
                    "and": [
                        {"role": ["reader", "writer"]},
                        {"claim": {"name": "ctry", "in": ["FR", "DE"]}},
                        {"path": f"/svc{n}/reports"},
                        {"method": ["GET", "HEAD"]},
                    ],
                },
            ],
        },
    }


def per_decision(policies: RoutePolicies, number: int) -> float:
    """Nanoseconds per decision on route 0 (best of five)."""
    policy = policies[0]
    assert policy.decide(FACTS).rule == "french-readers"
    return min(timeit.repeat(lambda: policy.decide(FACTS), number=number, repeat=5)) / number * 1e9


def compiled(routes: list[dict[str, Any]]) -> tuple[RoutePolicies, float]:
    """The compiled policies, and the seconds compiling took."""
    table = RouteTable([RouteConfig.model_validate(r) for r in routes])
    started = time.perf_counter()
    policies = RoutePolicies(table)
    return policies, time.perf_counter() - started


def main() -> None:
    """Print both tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--number", type=int, default=20_000, help="decisions per timing run")
    args = parser.parse_args()
    print("routes (3 rules each)   ns/decision   compile all")
    for count in (10, 100, 1_000, 10_000):
        policies, seconds = compiled([route(n) for n in range(count)])
        print(f"{count:>21,}   {per_decision(policies, args.number):>11.0f}   {seconds * 1000:>8.1f} ms")
    print()
    print("groups in one allow list   ns/decision")
    for groups in (10, 100, 1_000, 10_000):
        policies, _ = compiled([route(0, groups)])
        print(f"{groups:>24,}   {per_decision(policies, args.number):>11.0f}")


if __name__ == "__main__":
    main()

"""Compiling a route's ``allow`` short form and ``policy`` rules into ``RoutePolicy`` objects, once per load.

Every list becomes a ``frozenset``, every regex a compiled pattern, every CIDR a network and every path
prefix is folded as the route's upstream reads paths, so a request does no parsing. The short form
(``allow: {login_codes, roles, groups, users}``) is a rule per non-empty list, each of which must hold, with
the reasons the 403 page has always given.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

from broker.config.policy_schema import ClaimTest, Condition, PolicyRule, tests_used
from broker.config.schema import AllowConfig, RouteConfig
from broker.grammar.path_folding import LITERAL, PathRules, fold
from broker.identity.policy_rules import (
    AllOf,
    AnyOf,
    Negation,
    Node,
    RequestFacts,
    RoutePolicy,
    Rule,
    Test,
    claim_values,
    full_match,
)
from broker.proxy.routing import RouteTable, prefix_matches

SHORT_FORM_REFUSALS = {
    "login_codes": "your company login is not allowed on this application",
    "roles": "none of your roles is allowed on this route",
    "groups": "none of your groups is allowed on this route",
    "users": "your account is not allowed on this route",
}


def short_form_condition(allow: AllowConfig, dimension: str) -> Condition:
    """One list of the short form as the rule tree it means (``groups: [a, b]`` is ``group: [a, b]``)."""
    test = {"login_codes": "login_code", "roles": "role", "groups": "group", "users": "user"}[dimension]
    # Built from values the schema validated already (model_validate would check them again per route).
    values: dict[str, Any] = {test: list(getattr(allow, dimension))}
    return Condition.model_construct(None, **values)


def short_form_rules(allow: AllowConfig) -> list[tuple[str, Condition]]:
    """The short form's non-empty lists, each as (rule name, condition); all must hold."""
    return [
        (f"allow.{dimension}", short_form_condition(allow, dimension))
        for dimension in SHORT_FORM_REFUSALS
        if getattr(allow, dimension)
    ]


def _listed(label: str, values: Sequence[str]) -> str:
    shown = ", ".join(values[:5]) + (f", ... ({len(values)} in all)" if len(values) > 5 else "")
    return f"{label} in [{shown}]"


def _claim_test(claim: ClaimTest) -> Test:
    name = claim.name
    if claim.equals is not None:
        expected = claim.equals
        return Test(f"claim {name} equals {expected!r}", lambda f: expected in claim_values(f.session, name))
    if claim.in_ is not None:
        allowed = frozenset(claim.in_)
        return Test(
            _listed(f"claim {name}", claim.in_),
            lambda f: not allowed.isdisjoint(claim_values(f.session, name)),
        )
    assert claim.matches is not None
    matches = full_match(re.compile(claim.matches))
    return Test(
        f"claim {name} matches {claim.matches!r}",
        lambda f: any(matches(v) for v in claim_values(f.session, name)),
    )


def _email_domain(facts: RequestFacts) -> str:
    return facts.session.email.rpartition("@")[2].lower() if "@" in facts.session.email else ""


def _test(condition: Condition, rules: PathRules) -> Node:
    """A leaf condition as a ``Test`` (exactly one test key is set: the schema checks it)."""
    if condition.login_code is not None:
        codes = frozenset(condition.login_code)
        return Test(_listed("login_code", condition.login_code), lambda f: f.session.login_code in codes)
    if condition.role is not None:
        roles = frozenset(condition.role)
        return Test(_listed("role", condition.role), lambda f: not roles.isdisjoint(f.session.roles))
    if condition.group is not None:
        groups = frozenset(condition.group)
        return Test(_listed("group", condition.group), lambda f: not groups.isdisjoint(f.session.groups))
    if condition.user is not None:
        users = frozenset(condition.user)
        return Test(_listed("user", condition.user), lambda f: f.session.user_key in users)
    if condition.email_domain is not None:
        domains = frozenset(condition.email_domain)
        return Test(_listed("email_domain", condition.email_domain), lambda f: _email_domain(f) in domains)
    if condition.claim is not None:
        return _claim_test(condition.claim)
    if condition.ip is not None:
        networks = tuple(ipaddress.ip_network(c, strict=False) for c in condition.ip)
        return Test(
            _listed("client ip", condition.ip),
            lambda f: f.client is not None and any(f.client in n for n in networks),
        )
    if condition.method is not None:
        methods = frozenset(condition.method)
        return Test(_listed("method", condition.method), lambda f: f.method in methods)
    assert condition.path is not None
    # Folded like the request path, so /App/ADMIN on a case-insensitive upstream is under /app/admin.
    prefixes = tuple(fold(p, rules) for p in condition.path)
    return Test(_listed("path", condition.path), lambda f: any(prefix_matches(p, f.path) for p in prefixes))


def compile_condition(condition: Condition, rules: PathRules = LITERAL) -> Node:
    """A condition tree as nodes: branches keep their shape, tests become predicates."""
    if condition.and_ is not None:
        return AllOf(tuple(compile_condition(c, rules) for c in condition.and_))
    if condition.or_ is not None:
        return AnyOf(tuple(compile_condition(c, rules) for c in condition.or_))
    if condition.not_ is not None:
        return Negation(compile_condition(condition.not_, rules))
    return _test(condition, rules)


def compile_route(config: RouteConfig, rules: PathRules = LITERAL) -> RoutePolicy:
    """A route's short form and rules, compiled."""
    policy = config.policy
    required = tuple(
        Rule(name, compile_condition(condition, rules), SHORT_FORM_REFUSALS[name.removeprefix("allow.")])
        for name, condition in short_form_rules(config.allow)
    )

    def named(rules_: list[PolicyRule], kind: str) -> tuple[Rule, ...]:
        return tuple(
            Rule(r.name or f"{kind}[{i}]", compile_condition(r, rules)) for i, r in enumerate(rules_)
        )

    tests = tests_used([*policy.allow, *policy.deny])
    return RoutePolicy(
        deny=named(policy.deny, "deny"),
        required=required,
        allow=named(policy.allow, "allow"),
        needs_client="ip" in tests,
        tests_method="method" in tests,
        tests=tests,
    )


class RoutePolicies:
    """Every route's compiled policy, by route index: built once per config load, read per request."""

    def __init__(self, table: RouteTable) -> None:
        self._by_index = tuple(compile_route(route.config, route.rules) for route in table.routes)

    def __getitem__(self, index: int) -> RoutePolicy:
        return self._by_index[index]

    def __len__(self) -> int:
        return len(self._by_index)

"""The YAML shape of a route's ``policy``: named ``allow``/``deny`` rules, each an and/or/not tree.

A condition is a mapping with exactly one key (``and``, ``or``, ``not``, or one test such as ``group``); a
rule is a condition with an optional ``name`` (the name the audit log and the 403 page give). Values that
list things accept one scalar or a list. Single-value rules (CIDRs, regexes, methods) are checked here, at
the key's line; rules across values (paths under the route, depth) in ``validate.py``. Compiled once per
config load by ``broker/identity/policy_compiler.py``.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, model_validator

from broker.config import formats
from broker.config.fields import Text, problem
from broker.config.model import ConfigModel

# Bounds that keep one rule's cost per request small and predictable (a config is not a program).
MAX_POLICY_DEPTH = 8  # nesting of and/or/not
MAX_REGEX_LENGTH = 200  # characters of one `matches` pattern
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})
TESTS = ("login_code", "role", "group", "user", "email_domain", "claim", "ip", "method", "path")
BRANCHES = ("and", "or", "not")


def _as_list(value: object) -> object:
    """One scalar or a list of them: ``group: Finance`` is ``group: [Finance]``."""
    return [value] if isinstance(value, str | int | float) and not isinstance(value, bool) else value


def _method(value: str) -> str:
    if value.upper() not in METHODS:
        raise problem(f"not an HTTP method {value!r} (one of {', '.join(sorted(METHODS))})")
    return value.upper()


def _regex(value: str) -> str:
    if len(value) > MAX_REGEX_LENGTH:
        raise problem(f"a pattern is at most {MAX_REGEX_LENGTH} characters")
    try:
        re.compile(value)
    except re.error as exc:
        raise problem(f"not a regular expression: {exc}") from None
    return value


def _domain(value: str) -> str:
    return value.lower().lstrip("@")


Values = Annotated[list[Text], BeforeValidator(_as_list)]
Cidrs = Annotated[list[Annotated[Text, AfterValidator(formats.cidr)]], BeforeValidator(_as_list)]
Methods = Annotated[list[Annotated[Text, AfterValidator(_method)]], BeforeValidator(_as_list)]
Paths = Annotated[
    list[Annotated[Text, AfterValidator(formats.starts_with_slash("must start with '/'"))]],
    BeforeValidator(_as_list),
]
Domains = Annotated[list[Annotated[Text, AfterValidator(_domain)]], BeforeValidator(_as_list)]


class ClaimTest(ConfigModel):
    """A kept claim against values: ``equals`` one, ``in`` a list, or ``matches`` a regex (whole value)."""

    model_config = ConfigDict(populate_by_name=True)

    name: Text
    equals: Text | None = None
    in_: Values | None = Field(default=None, alias="in")
    matches: Annotated[Text, AfterValidator(_regex)] | None = None

    @model_validator(mode="after")
    def _one_comparison(self) -> ClaimTest:
        given = [n for n in ("equals", "in_", "matches") if getattr(self, n) is not None]
        if len(given) != 1:
            raise problem("give exactly one of equals, in, matches")
        return self


class Condition(ConfigModel):
    """One node of a rule tree: exactly one key, a branch (and/or/not) or a test."""

    model_config = ConfigDict(populate_by_name=True)

    and_: list[Condition] | None = Field(default=None, alias="and")
    or_: list[Condition] | None = Field(default=None, alias="or")
    not_: Condition | None = Field(default=None, alias="not")
    login_code: Values | None = None
    role: Values | None = None
    group: Values | None = None
    user: Values | None = None
    email_domain: Domains | None = None
    claim: ClaimTest | None = None
    ip: Cidrs | None = None
    method: Methods | None = None
    path: Paths | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Condition:
        if len(self.keys()) != 1:
            raise problem(f"give exactly one of {', '.join(BRANCHES + TESTS)} (got {len(self.keys())})")
        for branch in (self.and_, self.or_):
            if branch is not None and not branch:
                raise problem("and/or need at least one condition")
        return self

    def keys(self) -> list[str]:
        """The YAML keys given (for a rule: without ``name``)."""
        return [key.rstrip("_") for key in _NODE_FIELDS if getattr(self, key) is not None]

    def children(self) -> list[Condition]:
        """The nested conditions of a branch (empty for a test)."""
        if self.not_ is not None:
            return [self.not_]
        return list(self.and_ or self.or_ or [])


_NODE_FIELDS = ("and_", "or_", "not_", *TESTS)


class PolicyRule(Condition):
    """A top-level rule: a condition with the name the audit log and the 403 reason give."""

    name: Text | None = None


class PolicyConfig(ConfigModel):
    """A route's rules: any ``deny`` that matches refuses (deny wins); else some ``allow`` must match."""

    allow: list[PolicyRule] = Field(default_factory=list)
    deny: list[PolicyRule] = Field(default_factory=list)

    def rule_names(self) -> list[tuple[str, PolicyRule]]:
        """Each rule with its name: as configured, else ``allow[0]``, ``deny[1]``..."""
        named = [(r.name or f"allow[{i}]", r) for i, r in enumerate(self.allow)]
        return named + [(r.name or f"deny[{i}]", r) for i, r in enumerate(self.deny)]


def depth(condition: Condition) -> int:
    """How deep the tree goes (a test alone is 1)."""
    return 1 + max((depth(c) for c in condition.children()), default=0)


def uses(condition: Condition, test: str) -> bool:
    """Whether a tree contains this test anywhere (``ip``, ``method``...)."""
    return test in condition.keys() or any(uses(c, test) for c in condition.children())


def paths_in(condition: Condition) -> list[str]:
    """Every path prefix a tree tests."""
    own = list(condition.path or [])
    return own + [p for child in condition.children() for p in paths_in(child)]


def claims_in(condition: Condition) -> list[str]:
    """Every claim name a tree's ``claim`` tests read."""
    own = [condition.claim.name] if condition.claim is not None else []
    return own + [c for child in condition.children() for c in claims_in(child)]


def tests_used(conditions: list[Condition]) -> frozenset[str]:
    """Every test any of these trees uses (one walk; ``uses`` asks for one test)."""
    found: set[str] = set()
    pending = list(conditions)
    while pending:
        condition = pending.pop()
        found.update(condition.keys())
        pending.extend(condition.children())
    return frozenset(found) - set(BRANCHES)

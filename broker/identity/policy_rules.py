"""Evaluating a route's compiled rules on one request: deny wins, then the short form, then some allow rule.

Pure: the request is reduced to ``RequestFacts`` first (the session, the method, the path as the route's
upstream reads it, the client address as the trusted-proxy rules establish it). Every set of values was
built at compile time, so a test costs a set lookup; a route's rules are reached by its index, so the cost
of a decision never grows with the rules of other routes (``bench/policy_rules.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from broker.proxy.forwarded import IPAddress
from broker.sessions.model import Session

# Headers some frameworks read as "the real method" (Rails, Express method-override, ASP.NET, Symfony): a
# `POST` with `X-HTTP-Method-Override: DELETE` would pass a rule on POST and act as DELETE upstream.
METHOD_OVERRIDE_HEADERS = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")
MAX_CLAIM_VALUES = 64  # elements of a list claim a test looks at (kept claims are bounded anyway)


@dataclass(frozen=True)
class RequestFacts:
    """What a rule may look at: the session, and the request as the broker established it."""

    session: Session
    method: str = "GET"
    path: str = "/"  # the matching path, folded as the route's upstream reads paths
    client: IPAddress | None = None  # None: unknown (a rule on `ip` then never matches)


@dataclass(frozen=True)
class Decision:
    """An access decision: the rule that decided, and the reason shown to the user and audited."""

    allowed: bool
    reason: str = ""
    rule: str = ""


def claim_values(session: Session, name: str) -> tuple[str, ...]:
    """A claim's values as strings: a kept claim, else one of the broker's own fields (``email``...)."""
    value: Any = session.claims[name] if name in session.claims else session.public_claims().get(name)
    items = value[:MAX_CLAIM_VALUES] if isinstance(value, list) else [value]
    return tuple(_text(v) for v in items if v is not None)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as JSON writes it, which is how operators see claims
    return str(value)


class Node:
    """A compiled condition: ``test`` decides; ``trace`` also writes how (for ``broker policy explain``)."""

    label: str

    def test(self, facts: RequestFacts) -> bool:
        """Whether the condition holds for this request."""
        raise NotImplementedError

    def trace(self, facts: RequestFacts, out: list[str], depth: int = 0) -> bool:
        """``test``, appending one line per node evaluated (indented by depth)."""
        result = self.test(facts)
        out.append(f"{'  ' * depth}{'yes' if result else 'no '}  {self.label}")
        return result


@dataclass(frozen=True)
class Test(Node):
    """A leaf: one predicate over the facts."""

    label: str
    predicate: Callable[[RequestFacts], bool]

    def test(self, facts: RequestFacts) -> bool:
        """The predicate."""
        return self.predicate(facts)


@dataclass(frozen=True)
class AllOf(Node):
    """``and``: every child holds (stops at the first that does not)."""

    children: tuple[Node, ...]
    label: str = "and"

    def test(self, facts: RequestFacts) -> bool:
        """All children."""
        return all(child.test(facts) for child in self.children)

    def trace(self, facts: RequestFacts, out: list[str], depth: int = 0) -> bool:
        """The branch's line, then each child evaluated (as far as ``test`` goes)."""
        at = len(out)
        out.append("")
        result = True
        for child in self.children:
            if not child.trace(facts, out, depth + 1):
                result = False
                break
        out[at] = f"{'  ' * depth}{'yes' if result else 'no '}  {self.label}"
        return result


@dataclass(frozen=True)
class AnyOf(Node):
    """``or``: some child holds (stops at the first that does)."""

    children: tuple[Node, ...]
    label: str = "or"

    def test(self, facts: RequestFacts) -> bool:
        """Any child."""
        return any(child.test(facts) for child in self.children)

    def trace(self, facts: RequestFacts, out: list[str], depth: int = 0) -> bool:
        """The branch's line, then each child evaluated (as far as ``test`` goes)."""
        at = len(out)
        out.append("")
        result = False
        for child in self.children:
            if child.trace(facts, out, depth + 1):
                result = True
                break
        out[at] = f"{'  ' * depth}{'yes' if result else 'no '}  {self.label}"
        return result


@dataclass(frozen=True)
class Negation(Node):
    """``not``: the child does not hold."""

    child: Node
    label: str = "not"

    def test(self, facts: RequestFacts) -> bool:
        """Not the child."""
        return not self.child.test(facts)

    def trace(self, facts: RequestFacts, out: list[str], depth: int = 0) -> bool:
        """The branch's line, then the child."""
        at = len(out)
        out.append("")
        result = not self.child.trace(facts, out, depth + 1)
        out[at] = f"{'  ' * depth}{'yes' if result else 'no '}  {self.label}"
        return result


@dataclass(frozen=True)
class Rule:
    """A named top-level rule; ``refusal`` is the reason given when a required rule does not hold."""

    name: str
    node: Node
    refusal: str = ""


@dataclass(frozen=True)
class RoutePolicy:
    """One route's compiled rules: ``deny`` (any refuses), ``required`` (the short form, each must hold),
    ``allow`` (when present, one must hold)."""

    deny: tuple[Rule, ...] = ()
    required: tuple[Rule, ...] = ()
    allow: tuple[Rule, ...] = ()
    needs_client: bool = False  # some rule tests `ip`: the client address must be established
    tests_method: bool = False  # some rule tests `method`: method-override headers are refused
    tests: frozenset[str] = field(default_factory=frozenset)

    def decide(self, facts: RequestFacts) -> Decision:
        """Deny wins; then every short-form list; then some allow rule (if any is configured)."""
        for rule in self.deny:
            if rule.node.test(facts):
                return Decision(False, f"refused by the rule '{rule.name}'", rule.name)
        for rule in self.required:
            if not rule.node.test(facts):
                return Decision(False, rule.refusal, rule.name)
        if not self.allow:
            return Decision(True, "", "allow" if self.required else "")
        for rule in self.allow:
            if rule.node.test(facts):
                return Decision(True, "", rule.name)
        # Say that no rule admits, never which rules exist: they are the operator's business.
        return Decision(False, "no rule of this application admits you", "no allow rule matched")

    def explain(self, facts: RequestFacts) -> tuple[Decision, list[str]]:
        """The decision with every rule evaluated on the way, as lines an operator reads."""
        lines: list[str] = []
        for kind, rules in (
            ("deny", self.deny),
            ("allow (short form)", self.required),
            ("allow", self.allow),
        ):
            for rule in rules:
                lines.append(f"{kind} rule '{rule.name}':")
                rule.node.trace(facts, lines, 1)
        return self.decide(facts), lines


def method_overridden(headers: Sequence[str]) -> bool:
    """Whether a request carries a method-override header (given the names of the headers it has)."""
    folded = {name.lower() for name in headers}
    return any(name.lower() in folded for name in METHOD_OVERRIDE_HEADERS)


def full_match(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    """A regex test on the whole value (an unanchored ``search`` would let ``evil-Finance`` pass)."""
    return lambda value: pattern.fullmatch(value) is not None

"""Header expressions: a claim, piped through named transformations, checked and compiled once at load.

    claims.onpremisessamaccountname | default(claims.upn | strip_domain) | prefix('CONTOSO\\\\') | upper

The text is read by Python's own parser (``ast``, never ``eval``) and only a whitelist of node shapes is
accepted: a reference (``claims.NAME``, ``claims['odd-name']`` or one of the broker's fields such as
``email``), a string literal, and ``|`` followed by a transformation from ``FILTERS``. Nothing else (no
calls of anything but a listed transformation, no attributes but claim names, no operators but ``|``), so
an expression cannot run code, and its cost is bounded by its length. Surrounding ``{{ }}`` are allowed,
as operators who know Jinja or the Entra portal write them.

Values are a string, a list of strings, or missing (None). Each transformation declares what it takes
and gives, so ``roles | upper`` is a type error at load, with the hint to ``join`` or take ``first``.
"""

from __future__ import annotations

import ast
import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

MAX_EXPRESSION_CHARS = 500
MAX_PATTERN_CHARS = 200
Kind = Literal["text", "list", "any"]
Value = str | list[str] | None
# The broker's own fields an expression may read without ``claims.``, with their kinds.
BROKER_FIELDS: Mapping[str, Kind] = {
    "sub": "text",
    "tid": "text",
    "oid": "text",
    "name": "text",
    "preferred_username": "text",
    "email": "text",
    "role": "text",
    "roles": "list",
    "groups": "list",
    "login_code": "text",
}


class ExpressionError(ValueError):
    """An expression that does not parse, names an unknown transformation, or mixes up types."""


@dataclass(frozen=True)
class Ref:
    """A value read from the session: a kept claim (``claims.x``) or a broker field (``email``)."""

    name: str
    claim: bool

    @property
    def kind(self) -> Kind:
        """What the reference holds (a claim may hold either)."""
        return "any" if self.claim else BROKER_FIELDS[self.name]


@dataclass(frozen=True)
class Text:
    """A string literal."""

    value: str
    kind: Kind = "text"


@dataclass(frozen=True)
class Apply:
    """A transformation applied to the value on its left (``subject | name(args)``)."""

    subject: Node
    name: str
    args: tuple[Node, ...]
    kind: Kind
    run: Runner


Node = Ref | Text | Apply
Runner = Callable[[Value, tuple[Value, ...]], Value]


def _text_of(value: Value) -> str | None:
    """A value as text: a list reads as its elements joined by commas (the header list syntax)."""
    if value is None:
        return None
    return ",".join(value) if isinstance(value, list) else value


def _on_text(function: Callable[[str], str]) -> Runner:
    def run(value: Value, _args: tuple[Value, ...]) -> Value:
        text = _text_of(value)
        return None if text is None else function(text)

    return run


def _strip_domain(text: str) -> str:
    """``adele@contoso.com`` -> ``adele``; ``CONTOSO\\adele`` -> ``adele``."""
    return text.split("@", 1)[0].rsplit("\\", 1)[-1]


def _prefix(value: Value, args: tuple[Value, ...]) -> Value:
    text = _text_of(value)
    return None if text is None else f"{_text_of(args[0]) or ''}{text}"


def _suffix(value: Value, args: tuple[Value, ...]) -> Value:
    text = _text_of(value)
    return None if text is None else f"{text}{_text_of(args[0]) or ''}"


def _default(value: Value, args: tuple[Value, ...]) -> Value:
    return args[0] if value is None or value == "" or value == [] else value


def _first(value: Value, _args: tuple[Value, ...]) -> Value:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _join(value: Value, args: tuple[Value, ...]) -> Value:
    separator = _text_of(args[0]) if args else ","
    if isinstance(value, list):
        return (separator or "").join(value)
    return value


def _base64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


@dataclass(frozen=True)
class Filter:
    """A transformation: its arguments (``"text"`` literals or ``"expr"`` sub-expressions), what it takes
    and what it gives."""

    params: tuple[str, ...]
    optional: int
    takes: Kind
    gives: Kind | None  # None: the same kind as its input
    build: Callable[[tuple[Node, ...]], Runner]


def _fixed(
    run: Runner,
) -> Callable[[tuple[Node, ...]], Callable[..., Value]]:
    return lambda _args: run


def _replace(args: tuple[Node, ...]) -> Runner:
    pattern_node, replacement_node = args
    assert isinstance(pattern_node, Text) and isinstance(replacement_node, Text)
    pattern = re.compile(pattern_node.value)
    replacement = replacement_node.value
    # re.sub with a template would read \1 and \g<name>: fine, but a bad group is an error at load only.
    pattern.sub(replacement, "")
    return _on_text(lambda text: pattern.sub(replacement, text))


FILTERS: Mapping[str, Filter] = {
    "lower": Filter((), 0, "text", "text", _fixed(_on_text(str.lower))),
    "upper": Filter((), 0, "text", "text", _fixed(_on_text(str.upper))),
    "strip_domain": Filter((), 0, "text", "text", _fixed(_on_text(_strip_domain))),
    "prefix": Filter(("text",), 0, "text", "text", _fixed(_prefix)),
    "suffix": Filter(("text",), 0, "text", "text", _fixed(_suffix)),
    "replace": Filter(("text", "text"), 0, "text", "text", _replace),
    "first": Filter((), 0, "any", "text", _fixed(_first)),
    "join": Filter(("text",), 1, "any", "text", _fixed(_join)),
    "default": Filter(("expr",), 0, "any", None, _fixed(_default)),
    "base64": Filter((), 0, "text", "text", _fixed(_on_text(_base64))),
}


def _reference(node: ast.expr) -> Ref | None:
    """``claims.a.b`` -> claim ``a.b``; ``claims['x-y']`` -> claim ``x-y``; ``email`` -> broker field."""
    if isinstance(node, ast.Name) and node.id in BROKER_FIELDS:
        return Ref(node.id, claim=False)
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Subscript) and not parts:
        key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            parts.append(key.value)
            node = node.value
    if isinstance(node, ast.Name) and node.id == "claims" and parts:
        return Ref(".".join(reversed(parts)), claim=True)
    return None


def _compile(node: ast.expr, kinds: Mapping[str, Kind]) -> Node:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return Text(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _apply(_compile(node.left, kinds), node.right, kinds)
    ref = _reference(node)
    if ref is not None:
        if ref.claim and ref.name in kinds:
            return Ref(ref.name, claim=True)
        return ref
    if isinstance(node, ast.Name):
        raise ExpressionError(
            f"unknown claim {node.id!r} (one of {', '.join(sorted(BROKER_FIELDS))}; "
            f"or claims.{node.id} for a claim the company keeps)"
        )
    raise ExpressionError(f"not allowed in an expression: {ast.unparse(node)!r}")


def _apply(subject: Node, call: ast.expr, kinds: Mapping[str, Kind]) -> Apply:
    if isinstance(call, ast.Name):
        name, raw_args = call.id, []
    elif isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and not call.keywords:
        name, raw_args = call.func.id, list(call.args)
    else:
        raise ExpressionError(f"after '|' comes a transformation, not {ast.unparse(call)!r}")
    spec = FILTERS.get(name)
    if spec is None:
        raise ExpressionError(f"unknown transformation {name!r} (one of {', '.join(FILTERS)})")
    if not len(spec.params) - spec.optional <= len(raw_args) <= len(spec.params):
        raise ExpressionError(f"{name} takes {len(spec.params)} argument(s), not {len(raw_args)}")
    args: list[Node] = []
    for param, raw in zip(spec.params, raw_args, strict=False):
        arg = _compile(raw, kinds)
        if param == "text" and not isinstance(arg, Text):
            raise ExpressionError(f"{name}: its argument must be a quoted string")
        args.append(arg)
    subject_kind = _kind_of(subject, kinds)
    if spec.takes == "text" and subject_kind == "list":
        raise ExpressionError(
            f"{name} works on text, and this is a list: put '| first' or '| join' before it"
        )
    try:
        run = spec.build(tuple(args))
    except re.error as exc:
        raise ExpressionError(f"{name}: not a regular expression: {exc}") from None
    return Apply(subject, name, tuple(args), spec.gives or subject_kind, run)


def _kind_of(node: Node, kinds: Mapping[str, Kind]) -> Kind:
    if isinstance(node, Ref) and node.claim:
        return kinds.get(node.name, "any")
    return node.kind


def parse_expression(text: str, claim_kinds: Mapping[str, Kind] | None = None) -> Node:
    """Compile an expression (``claim_kinds``: what known claims hold, for type checks); raise
    ``ExpressionError`` with an operator's explanation."""
    body = text.strip()
    if len(body) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"an expression is at most {MAX_EXPRESSION_CHARS} characters")
    if body.startswith("{{") and body.endswith("}}"):
        body = body[2:-2].strip()
    if not body:
        raise ExpressionError("empty expression")
    try:
        tree = ast.parse(body, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"not an expression: {exc.msg} (at character {exc.offset})") from None
    return _compile(tree.body, claim_kinds or {})


def references(node: Node) -> list[Ref]:
    """Every claim or field an expression reads (to check they are kept)."""
    if isinstance(node, Ref):
        return [node]
    if isinstance(node, Apply):
        return references(node.subject) + [r for a in node.args for r in references(a)]
    return []


def evaluate(node: Node, read: Callable[[Ref], Value]) -> Value:
    """The expression's value, reading references through ``read``."""
    if isinstance(node, Text):
        return node.value
    if isinstance(node, Ref):
        return read(node)
    return node.run(evaluate(node.subject, read), tuple(evaluate(a, read) for a in node.args))

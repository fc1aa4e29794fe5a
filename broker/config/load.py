"""Load the YAML config into ``schema.BrokerConfig``, reporting *every* problem with file, line and key.

YAML is composed into nodes (not just values) so each key keeps its line number; the pydantic models then
validate the whole file in one pass, which collects every type, format and unknown-key problem. The rules
across values (``validate.py``) run next, on every part that validated, even when others did not. All the
problems are raised together as one ``ConfigError``, each as ``file:line: key.path: message``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from broker.config import schema
from broker.config.fields import PROBLEM, LoadContext, secret_file_keys
from broker.config.fields import parse_duration as parse_duration
from broker.config.validate import Part, Sections, check_sections, check_semantics, check_warnings
from broker.errors import ConfigError, ConfigProblem

KeyPath = tuple[str | int, ...]


def dotted(path: KeyPath) -> str:
    """Render a key path as operators write it: ``tenants.contoso.roles[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Collector:
    """Accumulates problems; knows the line of every key path seen in the YAML."""

    def __init__(self, file: str, lines: dict[KeyPath, int]) -> None:
        self.file = file
        self.lines = lines
        self.problems: list[ConfigProblem] = []

    def line_of(self, path: KeyPath) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def add(self, path: KeyPath, message: str) -> None:
        self.problems.append(ConfigProblem(self.file, self.line_of(path), dotted(path), message))


def _to_python(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], out: _Collector) -> Any:
    """Turn a composed YAML node into plain data, recording the line of each key path."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in result:
                lines[child] = key_node.start_mark.line + 1
                out.add(child, "duplicate key (YAML would silently keep only the last one)")
                continue
            lines[child] = key_node.start_mark.line + 1
            result[key] = _to_python(value_node, child, lines, out)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), lines, out) for i, item in enumerate(node.value)]
    if node.tag == "tag:yaml.org,2002:str":
        return node.value
    # Other scalars (ints, booleans, nulls, floats) by PyYAML's safe constructor; a fresh one each time,
    # as a constructor remembers every node it has built.
    return yaml.constructor.SafeConstructor().construct_object(node)


# libyaml's parser when PyYAML has it (the PyPI wheels do): ten times faster on a config with hundreds of
# routes, same nodes and marks.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MAPPING_TYPES = frozenset({"dict_type", "model_type", "model_attributes_type"})


def _unwrap(hint: Any) -> Any:
    """The type under ``Annotated[...]`` and ``X | None``."""
    while True:
        origin = get_origin(hint)
        if origin is Annotated:
            hint = get_args(hint)[0]
        elif origin in (Union, UnionType):
            hint = next(a for a in get_args(hint) if a is not type(None))
        else:
            return hint


def _schema_type_at(path: KeyPath) -> Any:
    """The schema's type for a key path (a model class, a ``Literal``...); None when the path is not in it."""
    current: Any = schema.BrokerConfig
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {info.alias or name: info for name, info in current.model_fields.items()}
            info = fields.get(str(part))
            if info is None:
                return None
            current = info.annotation
        elif get_origin(current) in (list, dict):
            current = get_args(current)[-1]
        else:
            return None
    return _unwrap(current)


def _problem_of(error: ErrorDetails) -> tuple[KeyPath, str]:
    """A pydantic error as the broker words it, at the key path an operator wrote."""
    path: KeyPath = tuple(part for part in error["loc"] if part != "[key]")
    kind, value, context = error["type"], error["input"], error.get("ctx", {})
    if kind == PROBLEM:
        file_key = context.get("file_key")
        if file_key is not None:  # a secret read from <name>_file: located at that key
            base = file_key.removesuffix("_file")
            at = max(i for i, part in enumerate(path) if part == base)
            path = (*path[:at], file_key, *path[at + 1 :])
        return path, str(context["message"])
    if kind == "missing":
        return path[:-1], f"missing required key '{path[-1]}'"
    if kind == "extra_forbidden":
        model = _schema_type_at(path[:-1])
        allowed = (
            sorted(info.alias or name for name, info in model.model_fields.items())
            if isinstance(model, type) and issubclass(model, BaseModel)
            else []
        )
        return path, f"unknown key (allowed: {', '.join(allowed)})"
    if kind == "literal_error":
        choices = get_args(_schema_type_at(path)) if get_origin(_schema_type_at(path)) is Literal else ()
        return path, f"must be one of {', '.join(map(str, choices))} (got {value!r})"
    if kind == "list_type":
        return path, f"must be a list, not {type(value).__name__}"
    if kind in _MAPPING_TYPES:
        return path, f"must be a mapping, not {type(value).__name__}"
    return path, error["msg"]


def _field_errors(errors: Iterable[ErrorDetails], prefix: KeyPath) -> set[str] | None:
    """Names of the fields under ``prefix`` that failed; None when the object itself failed (not a dict)."""
    failed: set[str] = set()
    for error in errors:
        loc = error["loc"]
        if loc[: len(prefix)] != prefix:
            continue
        if len(loc) == len(prefix):
            return None
        failed.add(str(loc[len(prefix)]))
    return failed


def _part(
    cls: type[schema.ConfigModel], raw: object, failed: set[str] | None, context: LoadContext
) -> Part[Any] | None:
    """``raw`` validated field by field, leaving out the fields that failed (marked unknown)."""
    if failed is None or not isinstance(raw, dict):
        return None
    if not failed:
        return Part(cls.model_validate(raw, context=context))
    data = secret_file_keys(raw, cls.secret_fields, cls.secret_lists)
    assert isinstance(data, dict)
    values: dict[str, Any] = {}
    unknown = set(failed)
    for name, info in cls.model_fields.items():
        if name in unknown or name not in data:
            continue
        # The field's type with its validators (pydantic keeps ``Annotated`` extras in ``metadata``).
        hint: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        try:
            values[name] = TypeAdapter(hint).validate_python(data[name], context=context)
        except ValidationError:
            unknown.add(name)
    return Part(cls.model_construct(**values), frozenset(unknown))


def _partial_sections(
    data: dict[str, Any], errors: list[ErrorDetails], context: LoadContext, exists: Callable[[Path], bool]
) -> Sections:
    """Each section, company and route as far as it validated, for the rules across values."""
    raw_tenants, raw_routes = data.get("tenants"), data.get("routes")
    parts = Sections(
        base_dir=context.base_dir,
        exists=exists,
        codes={str(code) for code in raw_tenants} if isinstance(raw_tenants, dict) else None,
    )

    def part(cls: type[schema.ConfigModel], raw: object, prefix: KeyPath) -> Part[Any] | None:
        return _part(cls, raw, _field_errors(errors, prefix), context)

    parts.server = part(schema.ServerConfig, data.get("server"), ("server",))
    parts.sessions = part(schema.SessionsConfig, data.get("sessions", {}), ("sessions",))
    parts.signing = part(schema.SigningConfig, data.get("signing"), ("signing",))
    for code, raw in raw_tenants.items() if isinstance(raw_tenants, dict) else ():
        if (tenant := part(schema.TenantConfig, raw, ("tenants", code))) is not None:
            parts.tenants[str(code)] = tenant
    for i, raw in enumerate(raw_routes) if isinstance(raw_routes, list) else ():
        if (route := part(schema.RouteConfig, raw, ("routes", i))) is not None:
            parts.routes.append((i, route))
    return parts


WARNING_PREFIX = "warning: "


def load_config_text(
    text: str,
    file: str = "<config>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    file_exists: Callable[[Path], bool] | None = None,
) -> schema.BrokerConfig:
    """Parse and validate config text; raise ``ConfigError`` listing every problem."""
    return load_config_text_with_warnings(text, file, base_dir, environ, file_exists)[0]


def load_config_text_with_warnings(
    text: str,
    file: str = "<config>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    file_exists: Callable[[Path], bool] | None = None,
) -> tuple[schema.BrokerConfig, list[ConfigProblem]]:
    """Like ``load_config_text``, with the config's warnings (risky but allowed), each located."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem(file, line, "", f"not valid YAML: {reason}")]) from None
    if root is None:
        raise ConfigError([ConfigProblem(file, None, "", "the file is empty")])
    lines: dict[KeyPath, int] = {}
    out = _Collector(file, lines)
    data = _to_python(root, (), lines, out)
    context = LoadContext(environ, base_dir or Path("."))
    exists = file_exists or Path.is_file
    config: schema.BrokerConfig | None = None
    try:
        config = schema.BrokerConfig.model_validate(data, context=context)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        for error in errors:
            out.add(*_problem_of(error))
        if isinstance(data, dict):
            # Check every part that did validate, so the operator sees all problems in one run.
            for path, message in check_sections(_partial_sections(data, errors, context, exists)):
                out.add(path, message)
    else:
        for path, message in check_semantics(config, context.base_dir, exists):
            out.add(path, message)
    if out.problems:
        # In file order; problems on one line keep the order they were found in.
        raise ConfigError(sorted(out.problems, key=lambda p: p.line or 0))
    assert config is not None
    warnings = _Collector(file, lines)
    for path, message in check_warnings(config):
        warnings.add(path, WARNING_PREFIX + message)
    return config, warnings.problems


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> schema.BrokerConfig:
    """Read a config file; relative ``*_file`` and key paths resolve against the file's folder."""
    return load_config_with_warnings(path, environ)[0]


def load_config_with_warnings(
    path: str | Path, environ: Mapping[str, str] | None = None
) -> tuple[schema.BrokerConfig, list[ConfigProblem]]:
    """Read a config file, with its warnings (``file:line: key: warning: ...``)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(file), None, "", f"cannot read: {exc.strerror}")]) from None
    return load_config_text_with_warnings(text, str(file), file.parent, environ)

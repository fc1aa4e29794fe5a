"""Load the YAML config into ``schema.BrokerConfig``, reporting *every* problem with file, line and key.

YAML is composed into nodes (not just values) so each key keeps its line number; the dataclasses are then
built generically from their type hints. Unknown keys, wrong types, duplicate keys, missing env vars and
unreadable ``*_file`` secrets are all collected and raised together as one ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from broker.config import schema
from broker.config.env import MissingEnvironmentVariable, expand_env
from broker.config.validate import Sections, check_sections, check_semantics, check_warnings
from broker.errors import ConfigError, ConfigProblem

T = TypeVar("T")
KeyPath = tuple[str | int, ...]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


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


def _hints(cls: type) -> dict[str, Any]:
    """A config dataclass's resolved field types (resolving the string annotations compiles them: once)."""
    return _cached_hints(cls)


@cache
def _cached_hints(cls: Any) -> dict[str, Any]:
    return get_type_hints(cls, include_extras=True)


def parse_duration(value: object) -> float | None:
    """``90`` / ``"90s"`` / ``"15m"`` / ``"8h"`` / ``"1d"`` -> seconds; None when unparsable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    return None


class _Builder:
    """Builds dataclasses from plain data by their type hints, collecting problems instead of stopping."""

    def __init__(self, out: _Collector, base_dir: Path, environ: Mapping[str, str] | None) -> None:
        self.out = out
        self.base_dir = base_dir
        self.environ = environ

    def expand(self, value: str, path: KeyPath) -> str | None:
        try:
            return expand_env(value, self.environ)
        except MissingEnvironmentVariable as exc:
            self.out.add(path, str(exc))
            return None

    def read_secret_file(self, value: object, path: KeyPath) -> str | None:
        if not isinstance(value, str):
            self.out.add(path, "must be a file path")
            return None
        file_path = self.expand(value, path)
        if file_path is None:
            return None
        resolved = self.base_dir / file_path
        try:
            return resolved.read_text(encoding="utf-8").strip()
        except OSError as exc:
            self.out.add(path, f"cannot read secret file {resolved}: {exc.strerror}")
            return None

    def build_dataclass(self, cls: type[T], data: object, path: KeyPath) -> T | None:
        if not isinstance(data, dict):
            self.out.add(path, f"must be a mapping, not {type(data).__name__}")
            return None
        hints = _hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {}
        ok = True
        for key, value in data.items():
            if key in fields:
                continue
            base = key.removesuffix("_file")
            if key.endswith("_file") and base in fields and fields[base].metadata.get("secret"):
                if base in data:
                    self.out.add((*path, key), f"give either {base} or {key}, not both")
                    ok = False
                    continue
                if get_origin(hints[base]) is list:
                    # A list of secrets (sessions.secret_keys): a list of files, one secret each.
                    files = value if isinstance(value, list) else [value]
                    read = [self.read_secret_file(item, (*path, key, i)) for i, item in enumerate(files)]
                    ok = ok and None not in read
                    kwargs[base] = read
                    continue
                secret = self.read_secret_file(value, (*path, key))
                ok = ok and secret is not None
                kwargs[base] = secret
                continue
            self.out.add((*path, key), f"unknown key (allowed: {', '.join(sorted(fields))})")
            ok = False
        for name, f in fields.items():
            if name in kwargs:
                continue
            if name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    self.out.add(path, f"missing required key '{name}'")
                    ok = False
                continue
            built = self.build_value(hints[name], data[name], (*path, name))
            if built is _INVALID:
                ok = False
            else:
                kwargs[name] = built
        return cls(**kwargs) if ok else None

    def build_value(self, hint: Any, value: object, path: KeyPath) -> Any:
        origin = get_origin(hint)
        if origin is Annotated:
            if schema.DURATION in hint.__metadata__:
                if isinstance(value, str):
                    value = self.expand(value, path)
                seconds = parse_duration(value)
                if seconds is None or seconds < 0:
                    self.out.add(path, f"must be a duration like 30s, 15m, 8h (got {value!r})")
                    return _INVALID
                return seconds
            return self.build_value(get_args(hint)[0], value, path)
        if origin in (Union, types.UnionType):
            options = [a for a in get_args(hint) if a is not type(None)]
            if value is None:
                return None
            return self.build_value(options[0], value, path)
        if origin is Literal:
            choices = get_args(hint)
            if value not in choices:
                self.out.add(path, f"must be one of {', '.join(map(str, choices))} (got {value!r})")
                return _INVALID
            return value
        if origin is list:
            if not isinstance(value, list):
                self.out.add(path, f"must be a list, not {type(value).__name__}")
                return _INVALID
            items = [self.build_value(get_args(hint)[0], v, (*path, i)) for i, v in enumerate(value)]
            return _INVALID if any(i is _INVALID for i in items) else items
        if origin is dict:
            if not isinstance(value, dict):
                self.out.add(path, f"must be a mapping, not {type(value).__name__}")
                return _INVALID
            item_hint = get_args(hint)[1]
            built = {k: self.build_value(item_hint, v, (*path, k)) for k, v in value.items()}
            return _INVALID if any(v is _INVALID for v in built.values()) else built
        if dataclasses.is_dataclass(hint):
            result = self.build_dataclass(hint, value, path)  # type: ignore[arg-type]
            return _INVALID if result is None else result
        return self.build_scalar(hint, value, path)

    def build_scalar(self, hint: Any, value: object, path: KeyPath) -> Any:
        if hint is str:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                self.out.add(path, f"must be a string, not {type(value).__name__}")
                return _INVALID
            expanded = self.expand(str(value), path)
            return _INVALID if expanded is None else expanded
        if hint is bool:
            if not isinstance(value, bool):
                self.out.add(path, f"must be true or false (got {value!r})")
                return _INVALID
            return value
        if hint in (int, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.out.add(path, f"must be a number (got {value!r})")
                return _INVALID
            return hint(value)
        raise TypeError(f"schema type {hint!r} is not supported by the loader")


_INVALID: Any = object()


def _partial_sections(
    data: dict[str, Any], environ: Mapping[str, str] | None, base_dir: Path, exists: Callable[[Path], bool]
) -> Sections:
    """Build each section, company and route on its own; their type problems were reported already."""
    quiet = _Builder(_Collector("", {}), base_dir, environ)
    raw_tenants = data.get("tenants") if isinstance(data.get("tenants"), dict) else {}
    raw_routes = data.get("routes") if isinstance(data.get("routes"), list) else []
    assert isinstance(raw_tenants, dict) and isinstance(raw_routes, list)
    parts = Sections(base_dir=base_dir, exists=exists, codes={str(code) for code in raw_tenants})
    parts.server = quiet.build_dataclass(schema.ServerConfig, data.get("server"), ("server",))
    parts.sessions = quiet.build_dataclass(schema.SessionsConfig, data.get("sessions", {}), ("sessions",))
    parts.signing = quiet.build_dataclass(schema.SigningConfig, data.get("signing"), ("signing",))
    for code, raw in raw_tenants.items():
        tenant = quiet.build_dataclass(schema.TenantConfig, raw, ("tenants", code))
        if tenant is not None:
            parts.tenants[str(code)] = tenant
    for i, raw in enumerate(raw_routes):
        route = quiet.build_dataclass(schema.RouteConfig, raw, ("routes", i))
        if route is not None:
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
    builder = _Builder(out, base_dir or Path("."), environ)
    config = builder.build_dataclass(schema.BrokerConfig, data, ())
    if config is not None:
        for path, message in check_semantics(config, base_dir or Path("."), file_exists):
            out.add(path, message)
    elif isinstance(data, dict):
        # Some part had a type error (already reported): still check every part that did build, so the
        # operator sees all problems in one run.
        parts = _partial_sections(data, environ, base_dir or Path("."), file_exists or Path.is_file)
        for path, message in check_sections(parts):
            out.add(path, message)
    if out.problems:
        raise ConfigError(out.problems)
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

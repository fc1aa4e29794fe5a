"""The value types of the config schema: how a YAML scalar becomes a typed field, with the broker's messages.

Each type is ``Annotated[<python type>, BeforeValidator(...)]``, so the models keep plain attribute types
(``str``, ``float``...) while loading keeps the rules operators know: strings take ``${VAR}`` references,
durations read ``"90s"``/``"8h"``, booleans are ``true``/``false`` only, numbers are never strings. A
validator fails with ``problem(message)``; the loader prints the message as is, at the key's line.

Expansion needs a ``LoadContext`` (passed by the loader as pydantic's validation context); a model built in
code (``RouteConfig(host=..., upstream=...)``) gets no context, so its strings are taken literally.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, ValidationInfo
from pydantic_core import PydanticCustomError

from broker.config.env import expand_env
from broker.errors import MissingEnvironmentVariable

# The error type of every broker-worded problem; the loader shows ``ctx["message"]`` unchanged.
PROBLEM = "broker_config"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def problem(message: str, file_key: str | None = None) -> PydanticCustomError:
    """A validation error worded for operators (``file_key``: reported at the ``*_file`` key instead)."""
    context: dict[str, Any] = {"message": message}
    if file_key is not None:
        context["file_key"] = file_key
    # The message goes through the context, never the template: it may contain braces ('{code}').
    return PydanticCustomError(PROBLEM, "{message}", context)


@dataclass(frozen=True)
class LoadContext:
    """What loading a file needs beyond its text: the environment for ``${VAR}``, the folder for files."""

    environ: Mapping[str, str] | None
    base_dir: Path


@dataclass(frozen=True)
class SecretFile:
    """A ``<name>_file`` key read in place of the secret ``<name>`` (``conflict``: both were given)."""

    key: str
    path: object
    conflict: bool = False


def parse_duration(value: object) -> float | None:
    """``90`` / ``"90s"`` / ``"15m"`` / ``"8h"`` / ``"1d"`` -> seconds; None when unparsable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    return None


def _context(info: ValidationInfo) -> LoadContext | None:
    context = info.context
    return context if isinstance(context, LoadContext) else None


def _expand(value: str, info: ValidationInfo) -> str:
    context = _context(info)
    if context is None:
        return value
    try:
        return expand_env(value, context.environ)
    except MissingEnvironmentVariable as exc:
        raise problem(str(exc)) from None


def _text(value: object, info: ValidationInfo) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise problem(f"must be a string, not {type(value).__name__}")
    return _expand(str(value), info)


def _read_secret_file(secret: SecretFile, info: ValidationInfo) -> str:
    if secret.conflict:
        raise problem(f"give either {secret.key.removesuffix('_file')} or {secret.key}, not both", secret.key)
    if not isinstance(secret.path, str):
        raise problem("must be a file path", secret.key)
    try:
        file_path = _expand(secret.path, info)
    except PydanticCustomError as exc:
        raise problem(str(exc), secret.key) from None
    context = _context(info)
    resolved = (context.base_dir if context else Path(".")) / file_path
    try:
        return resolved.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise problem(f"cannot read secret file {resolved}: {exc.strerror}", secret.key) from None


def _secret(value: object, info: ValidationInfo) -> str:
    if isinstance(value, SecretFile):
        return _read_secret_file(value, info)
    return _text(value, info)


def _duration(value: object, info: ValidationInfo) -> float:
    if isinstance(value, str):
        value = _expand(value, info)
    seconds = parse_duration(value)
    if seconds is None or seconds < 0:
        raise problem(f"must be a duration like 30s, 15m, 8h (got {value!r})")
    return seconds


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise problem(f"must be true or false (got {value!r})")
    return value


def _number(kind: type[int] | type[float]) -> Callable[[object], int | float]:
    def convert(value: object) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise problem(f"must be a number (got {value!r})")
        return kind(value)

    return convert


Text = Annotated[str, BeforeValidator(_text)]
# A secret string: also accepted from a ``<name>_file`` key (the model turns it into a ``SecretFile``).
SecretText = Annotated[str, BeforeValidator(_secret)]
Duration = Annotated[float, BeforeValidator(_duration)]
Bool = Annotated[bool, BeforeValidator(_boolean)]
Int = Annotated[int, BeforeValidator(_number(int))]
Float = Annotated[float, BeforeValidator(_number(float))]


def secret_file_keys(data: object, secret_names: tuple[str, ...], lists: frozenset[str]) -> object:
    """Replace each secret's ``<name>_file`` key by a ``SecretFile`` under ``<name>`` (read when validated).

    ``lists`` are the secrets that are lists (``sessions.secret_keys``): a list of files, one secret each.
    """
    if not isinstance(data, dict) or not any(f"{name}_file" in data for name in secret_names):
        return data
    out = dict(data)
    for name in secret_names:
        key = f"{name}_file"
        if key not in out:
            continue
        value = out.pop(key)
        if name in out:
            conflict = SecretFile(key, value, conflict=True)
            out[name] = [conflict] if name in lists else conflict
        elif name in lists:
            out[name] = [SecretFile(key, item) for item in (value if isinstance(value, list) else [value])]
        else:
            out[name] = SecretFile(key, value)
    return out

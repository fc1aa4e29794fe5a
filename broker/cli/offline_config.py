"""Load a config for a one-shot command on a machine that lacks some of the gateway's secrets.

``entra-setup``, ``sessions`` and ``check-config`` run on an operator's laptop or in CI, where the tenants'
client secrets (``${CONTOSO_CLIENT_SECRET}``) are not set. Each command says which unset variables it can
do without (``Tolerance``); those are given a stand-in value that passes validation and is never used to
talk to anyone, and are reported back so the command can warn where it matters. An unset variable the
command does need (the session keys for ``sessions``) stays the error it is for ``broker run``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from broker.config.load import load_config_text_with_warnings
from broker.config.schema import BrokerConfig
from broker.errors import ConfigError, ConfigProblem, MissingEnvironmentVariable
from broker.identity.assertion import generate_es256_pem

# The loader words an unset variable through MissingEnvironmentVariable; read its name back from that text.
_UNSET = re.compile(
    "^"
    + re.escape(str(MissingEnvironmentVariable("NAME"))).replace("NAME", r"([A-Za-z_][A-Za-z0-9_]*)")
    + "$"
)
_SIGNING_KEY = re.compile(r"^signing\.keys\[\d+\]$")
_SESSION_KEY = re.compile(r"^sessions\.secret_keys\[\d+\]$")

# Which unset variables a command can do without, by the key path that references them.
Tolerance = Callable[[str], bool]


def any_key(key_path: str) -> bool:
    """Tolerate every unset variable (``entra-setup`` and ``check-config`` read no secret)."""
    return True


def except_sessions(key_path: str) -> bool:
    """Tolerate all but the session store's settings: ``sessions`` needs its keys and its Redis URL."""
    return not key_path.startswith("sessions.")


@dataclass(frozen=True)
class UnsetVariable:
    """A ``${VAR}`` the config references that is not set here, and where the config references it."""

    name: str
    key_path: str
    line: int | None

    def warning(self, file: str, why: str) -> str:
        """``file:line: key: warning: environment variable X is not set here (<why>)``."""
        where = f"{file}:{self.line}" if self.line is not None else file
        return f"{where}: {self.key_path}: warning: environment variable {self.name} is not set here ({why})"


@dataclass(frozen=True)
class OfflineConfig:
    """The loaded config, its warnings (as the loader words them) and the variables stood in for."""

    config: BrokerConfig
    warnings: list[ConfigProblem]
    unset: list[UnsetVariable]


def _unset_variable(problem: ConfigProblem) -> UnsetVariable | None:
    match = _UNSET.match(problem.message)
    return UnsetVariable(match.group(1), problem.key_path, problem.line) if match else None


def _stand_in(variable: UnsetVariable, scratch: Path) -> str:
    """A value that passes validation where the variable is used; never a real credential."""
    if _SIGNING_KEY.match(variable.key_path):
        # A throw-away key, so check-config can still load every other file the config names.
        key_file = scratch / f"{variable.name}.pem"
        if not key_file.exists():
            key_file.write_bytes(generate_es256_pem())
        return str(key_file)
    if _SESSION_KEY.match(variable.key_path):
        return base64.b64encode(os.urandom(32)).decode()
    return f"unset-{variable.name}"


@contextlib.contextmanager
def load_offline(path: str | Path, tolerate: Tolerance) -> Iterator[OfflineConfig]:
    """Load ``path``; unset variables that ``tolerate`` accepts get stand-ins (valid inside the block).

    Raises the loader's ``ConfigError`` unchanged when anything else is wrong, or when an unset variable is
    one the command needs.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(file), None, "", f"cannot read: {exc.strerror}")]) from None
    with tempfile.TemporaryDirectory(prefix="broker-offline-") as scratch:
        yield _load(text, file, tolerate, Path(scratch))


def _load(text: str, file: Path, tolerate: Tolerance, scratch: Path) -> OfflineConfig:
    try:
        config, warnings = load_config_text_with_warnings(text, str(file), file.parent)
        return OfflineConfig(config, warnings, [])
    except ConfigError as exc:
        first = exc
    unset = [_unset_variable(problem) for problem in first.problems]
    found = [variable for variable in unset if variable is not None]
    if len(found) < len(unset) or not all(tolerate(v.key_path) for v in found):
        raise first
    environ = dict(os.environ)
    for variable in found:
        environ.setdefault(variable.name, _stand_in(variable, scratch))
    try:
        config, warnings = load_config_text_with_warnings(text, str(file), file.parent, environ)
    except ConfigError:
        # A stand-in was not enough (a variable naming a file to read): the unset variables are the cause.
        raise first from None
    return OfflineConfig(config, warnings, found)

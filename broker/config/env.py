"""``${VAR}`` and ``${VAR:-default}`` substitution in config strings.

Secrets never live in YAML: they come from the environment (this module) or from files (``*_file`` keys).
A missing variable without a default is an error, not an empty string, so a forgotten secret fails closed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from broker.errors import MissingEnvironmentVariable

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace every ``${VAR}`` / ``${VAR:-default}`` in ``value``; raise if a variable is missing."""
    env = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise MissingEnvironmentVariable(name)

    return _REFERENCE.sub(replace, value)

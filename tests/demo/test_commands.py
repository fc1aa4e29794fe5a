"""The development commands run from their own packages (``python -m ...``), and ``broker`` has none."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.support.ports import HeldPort

ROOT = Path(__file__).parents[2]


def python_m(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m ARGS`` from the repository root (as ``make demo`` runs it), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


@pytest.mark.parametrize(
    ("module", "options"),
    [
        ("demo", ("--config", "--idp-config", "--gateway-port", "--idp-port", "--backend-port")),
        ("devidp", ("--config", "--listen", "--public-url")),
        ("demo.whoami", ("--listen", "--jwks-url", "--issuer", "--audience")),
    ],
)
def test_dev_command_parses_its_options(module: str, options: tuple[str, ...]) -> None:
    result = python_m(module, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: python -m {module} " in result.stdout
    assert all(option in result.stdout for option in options)


def test_devidp_reports_an_unusable_directory(tmp_path: Path) -> None:
    broken = tmp_path / "devidp.yaml"
    broken.write_text("tenants: nope\n")
    result = python_m("devidp", "--config", str(broken))
    assert result.returncode == 1
    assert str(broken) in result.stderr


def test_broker_offers_the_gateway_commands_alone() -> None:
    result = python_m("broker", "demo")
    assert result.returncode == 2 and "invalid choice: 'demo'" in result.stderr


@pytest.mark.parametrize("chosen_by", ["flag", "env"])
def test_demo_names_a_busy_port_and_how_to_choose_another(chosen_by: str) -> None:
    """A port another program holds: one line naming it and the flag or variable, never a traceback."""
    busy = HeldPort()  # bound (not listening) for the whole test: the demo's dev IdP cannot bind it
    try:
        if chosen_by == "flag":
            result = python_m("demo", "--idp-port", str(busy.number))
        else:
            result = python_m("demo", env={"BROKER_DEMO_IDP_PORT": str(busy.number)})
    finally:
        busy.close()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    line = next(line for line in result.stderr.splitlines() if "already in use" in line)
    assert f"port {busy.number} (the dev identity provider)" in line
    assert "--idp-port" in line and "BROKER_DEMO_IDP_PORT" in line

"""The development commands run from their own packages (``python -m ...``), and ``broker`` has none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def python_m(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m ARGS`` from the repository root (as ``make demo`` runs it), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("module", "options"),
    [
        ("demo", ("--config", "--idp-config")),
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

"""The ``broker`` command line: its version, its help, and one-shot commands where the secrets are unset."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from broker import __version__
from broker.cli.main import build_parser
from broker.cli.main import main as broker_cli
from tests.support.stack import ADELE, Stack

DEMO_CONFIG = str(Path(__file__).parents[2] / "config" / "demo.yaml")
DEMO_VARIABLES = (
    "CONTOSO_CLIENT_SECRET",
    "FABRIKAM_CLIENT_SECRET",
    "BROKER_DEMO_SESSION_KEY",
    "BROKER_DEMO_SIGNING_KEY",
)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        broker_cli(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"broker {__version__}"


def _parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += _parsers(child)
    return found


def test_every_argument_of_every_command_is_explained() -> None:
    parsers = _parsers(build_parser())
    assert {prog for prog, _ in parsers} >= {
        "broker run",
        "broker check-config",
        "broker entra-setup",
        "broker sessions list",
        "broker sessions revoke",
        "broker keygen",
    }
    for prog, parser in parsers:
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"{prog}: {action.dest} has no help"


@pytest.fixture
def without_demo_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in DEMO_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("without_demo_secrets")
def test_entra_setup_on_a_fresh_clone_warns_only_about_its_company(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert broker_cli(["entra-setup", "contoso", "--config", DEMO_CONFIG]) == 0
    out, err = capsys.readouterr()
    assert "# Microsoft Entra setup for Contoso Ltd" in out and "unset-" not in out
    assert "CONTOSO_CLIENT_SECRET is not set" in err
    for other in DEMO_VARIABLES[1:]:
        assert other not in err  # not this guide's concern


@pytest.mark.usefixtures("without_demo_secrets")
def test_check_config_warns_about_every_unset_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert broker_cli(["check-config", DEMO_CONFIG]) == 0
    out, err = capsys.readouterr()
    assert "OK (2 companies, 3 routes)" in out
    for name in DEMO_VARIABLES:
        assert f"warning: environment variable {name} is not set here" in err


@pytest.mark.usefixtures("without_demo_secrets")
def test_check_config_still_reports_real_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broker.yaml"
    broken.write_text(Path(DEMO_CONFIG).read_text().replace("idle_timeout: 8h", "idle_timeout: soon"))
    assert broker_cli(["check-config", str(broken)]) == 1
    err = capsys.readouterr().err
    assert "sessions.idle_timeout" in err and "CONTOSO_CLIENT_SECRET is not set" in err


async def test_sessions_cli_needs_the_session_keys_but_not_the_tenants_secrets(
    redis_stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with redis_stack.browser() as browser:
        await redis_stack.login(browser, "contoso", ADELE.username)
    config = str(redis_stack.config_path)
    for name in ("TEST_CONTOSO_SECRET", "TEST_FABRIKAM_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEST_SESSION_KEY", redis_stack.env["TEST_SESSION_KEY"])
    listing = ["sessions", "list", "--config", config, "--company", "contoso"]
    assert await asyncio.to_thread(broker_cli, listing) == 0
    out, err = capsys.readouterr()
    assert "1 session(s)" in out and err == ""
    monkeypatch.delenv("TEST_SESSION_KEY")
    assert await asyncio.to_thread(broker_cli, listing) == 1
    assert "TEST_SESSION_KEY is not set" in capsys.readouterr().err

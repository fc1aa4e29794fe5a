"""Configs that used to pass ``check-config`` but were unsafe (issue 13, 4): refused, or warned about, each
located as ``file:line: key``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from broker.config.load import load_config_text, load_config_text_with_warnings
from broker.errors import ConfigError
from broker.identity.assertion import generate_es256_pem
from tests.config.test_load import GOOD, exists

ENV = {"SECRET": "x"}
FABRIKAM = """  fabrikam:
    display_name: Fabrikam
    tenant_id: 8b7c6d5e-4f3a-4b2c-9d1e-0f9a8b7c6d5e
    client_id: 2e1d0c9b-8a7f-4e6d-5c4b-3a2f1e0d9c8b
    client_secret: y
routes:"""


def problems_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "b.yaml", environ=ENV, file_exists=exists)
    return str(info.value)


def warnings_of(text: str) -> list[str]:
    _, warnings = load_config_text_with_warnings(text, "b.yaml", environ=ENV, file_exists=exists)
    return [str(w) for w in warnings]


def test_several_workers_with_the_memory_store_are_refused() -> None:
    text = GOOD.replace('server: {public_url: "https://gw.example.com"}', SERVER_WITH_WORKERS)
    assert "b.yaml:4: server.workers: 2 workers need a shared session store" in problems_of(text)
    assert "logout or revocation on one worker" in problems_of(text)  # says what it would mean


SERVER_WITH_WORKERS = """server:
  public_url: "https://gw.example.com"
  workers: 2"""


def test_several_workers_with_redis_and_one_worker_with_memory_are_fine() -> None:
    shared = GOOD.replace('server: {public_url: "https://gw.example.com"}', SERVER_WITH_WORKERS)
    redis = shared + 'sessions: {store: redis://r:6379/0, secret_keys: ["${SESSION_KEY}"]}\n'
    environ = {**ENV, "SESSION_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}
    assert load_config_text(redis, environ=environ, file_exists=exists).server.workers == 2
    one = SERVER_WITH_WORKERS.replace("2", "1") + GOOD.split("}", 1)[1]
    assert load_config_text(one, environ=ENV, file_exists=exists).server.workers == 1


@pytest.mark.parametrize("skew", ["30d", "1h", "301s"])
def test_clock_skew_beyond_five_minutes_is_refused(skew: str) -> None:
    text = GOOD.replace("client_secret: ${SECRET}", f"client_secret: ${{SECRET}}\n    clock_skew: {skew}")
    assert "b.yaml:10: tenants.contoso.clock_skew: at most 5m" in problems_of(text)


def test_clock_skew_of_five_minutes_is_accepted() -> None:
    text = GOOD.replace("client_secret: ${SECRET}", "client_secret: ${SECRET}\n    clock_skew: 5m")
    assert load_config_text(text, environ=ENV, file_exists=exists).tenants["contoso"].clock_skew == 300


def shared_route(claim: str) -> str:
    """Two companies, one route open to both (no allow.login_codes), ``claim`` as ``X-Remote-User``."""
    return GOOD.replace("routes:", FABRIKAM).replace(
        ", allow: {login_codes: [contoso]}}", f", headers: {{X-Remote-User: {claim}}}}}"
    )


@pytest.mark.parametrize("claim", ["email", "preferred_username", "name"])
def test_a_mutable_claim_as_the_user_header_on_a_shared_route_is_warned_about(claim: str) -> None:
    assert warnings_of(shared_route(claim)) == [
        f"b.yaml:16: routes[0].headers.X-Remote-User: warning: claim '{claim}' is mutable and not verified "
        "across tenants: on a route users of several tenants reach, a user of one can pass for a user of "
        "another (nOAuth); identify users by 'sub' (tid:oid), or limit allow.login_codes to one company"
    ]


def test_a_multi_tenant_company_alone_is_several_tenants() -> None:
    multi = GOOD.replace(
        "tenant_id: 3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c",
        "tenant_id: organizations\n    allowed_tenants: [3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c, "
        "8b7c6d5e-4f3a-4b2c-9d1e-0f9a8b7c6d5e]",
    ).replace("allow: {login_codes: [contoso]}", "allow: {login_codes: [contoso]}, headers: {X-User: email}")
    assert len(warnings_of(multi)) == 1


def test_safe_keys_or_one_company_give_no_warning() -> None:
    assert warnings_of(shared_route("sub")) == []
    one_company = GOOD.replace("allow: {login_codes: [contoso]}", "headers: {X-Remote-User: email}")
    assert warnings_of(one_company) == []
    restricted = GOOD.replace("routes:", FABRIKAM).replace(
        "allow: {login_codes: [contoso]}", "allow: {login_codes: [contoso]}, headers: {X-Remote-User: email}"
    )
    assert warnings_of(restricted) == []


def test_check_config_prints_warnings_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from broker.cli.main import main as broker_cli

    (tmp_path / "key.pem").write_bytes(generate_es256_pem())
    (tmp_path / "b.yaml").write_text(shared_route("email").replace("${SECRET}", "x"))
    assert broker_cli(["check-config", str(tmp_path / "b.yaml")]) == 0
    out = capsys.readouterr()
    assert f"{tmp_path / 'b.yaml'}:16: routes[0].headers.X-Remote-User: warning: claim 'email'" in out.err
    assert "OK (2 companies, 1 routes)" in out.out


async def test_broker_run_logs_the_warnings_at_start(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_bytes(generate_es256_pem())
    text = shared_route("email").replace("${SECRET}", "x")
    text = text.replace('server: {public_url: "https://gw.example.com"}', SERVER_LISTENING_ANYWHERE)
    (tmp_path / "b.yaml").write_text(text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker", "run", "--config", str(tmp_path / "b.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)).decode()
        assert "config warning" in first
        assert "routes[0].headers.X-Remote-User: warning: claim 'email'" in first
    finally:
        proc.terminate()
        proc.wait(timeout=20)


SERVER_LISTENING_ANYWHERE = """server:
  public_url: "https://gw.example.com"
  listen: 127.0.0.1:0"""

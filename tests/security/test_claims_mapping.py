"""Identity mapping and policy end to end (issue 17, stream S): the "Done when" scenario, and claims that try
to inject headers.

A company whose legacy app reads ``Remote-User: CONTOSO\\adele`` and admits only ``Finance`` members from
the office network, configured in YAML alone, checked with ``check-config`` and ``policy explain``, and
served through the real gateway, dev IdP and whoami backend.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from broker.cli.main import main as broker_cli
from devidp import DevIdpConfig, DevUser
from tests.support.stack import ADELE, ALEX, CONTOSO_TID, Stack, devidp_config, running_stack

FINANCE = "f1a2b3c4-0000-4000-8000-00000000f1a0"  # the Finance group's object ID
OFFICE = "10.20.0.0/16"
IN_OFFICE = {"X-Forwarded-For": "10.20.0.7"}
AT_HOME = {"X-Forwarded-For": "198.51.100.7"}
ADELE_SYNCED = replace(
    ADELE,
    groups=[FINANCE],
    claims={"onpremisessamaccountname": "adele", "upn": "adele@contoso.example", "employeeid": "E10042"},
)
# A cloud-only account: no on-premises name, so the header falls back to the UPN without its domain.
ALEX_CLOUD = replace(ALEX, groups=[], claims={"upn": "alex@contoso.example"})
# Claims a hostile (or careless) directory admin could set: header syntax, a pre-encoded value, too long.
MALLORY = DevUser(
    oid="3f4a5b6c-7d8e-4f9a-8b0c-1d2e3f4a5b6c",
    name="Mallory",
    username="mallory@contoso.example",
    groups=[FINANCE],
    claims={"onpremisessamaccountname": "adele\r\nRemote-User: CONTOSO\\admin"},
)
PREENCODED = replace(
    MALLORY,
    oid="4a5b6c7d-8e9f-4a0b-9c1d-2e3f4a5b6c7d",
    username="preencoded@contoso.example",
    claims={"onpremisessamaccountname": "pre", "employeeid": "UTF-8''%61dmin"},
)
LONG = replace(
    MALLORY,
    oid="5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e",
    username="long@contoso.example",
    claims={"onpremisessamaccountname": "adele" + "x" * 250},
)
REMOTE_USER = "claims.onpremisessamaccountname | default(claims.upn | strip_domain) | prefix('CONTOSO\\\\')"
FINANCE_ROUTE: dict[str, Any] = {
    "host": "127.0.0.1",
    "path": "/finance/",
    "upstream": "{backend_url}",
    "allow": {"login_codes": ["contoso"]},
    "headers": {"Remote-User": REMOTE_USER, "X-Employee-Id": "claims.employeeid"},
    "header_max_length": 64,
    "assertion_claims": ["employeeid"],
    "policy": {
        "allow": [{"name": "finance-members", "group": FINANCE}],
        "deny": [{"name": "office-network-only", "not": {"ip": OFFICE}}],
    },
}


def directory() -> DevIdpConfig:
    """The dev IdP's directory with the synced, cloud-only and hostile accounts in Contoso."""
    config = devidp_config()
    contoso = replace(config.tenants[0], users=[ADELE_SYNCED, ALEX_CLOUD, MALLORY, PREENCODED, LONG])
    return replace(config, tenants=[contoso, *config.tenants[1:]])


@pytest.fixture
async def finance(tmp_path: Path) -> AsyncIterator[Stack]:
    """The stack with the finance route; the test client plays the office's load balancer."""
    async with running_stack(
        "memory",
        tmp_path,
        {},
        idp_config=directory(),
        contoso={
            "keep_claims": ["onpremisessamaccountname", "upn", "employeeid"],
            "headers": {"X-Employee-Number": "claims.employeeid"},
        },
        server={"trusted_proxies": ["127.0.0.0/8"]},
        routes_extra=[FINANCE_ROUTE],
    ) as stack:
        yield stack


async def visit(stack: Stack, username: str, **headers: str) -> tuple[int, Any]:
    """Sign ``username`` in and GET /finance/ (status, whoami JSON or the 403 body)."""
    async with stack.browser() as browser:
        await stack.login(browser, "contoso", username)
        return await stack.whoami(browser, "/finance/", **headers)


async def test_done_when_finance_from_the_office_with_a_legacy_user_header(
    finance: Stack,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, "broker.audit")
    for name, value in finance.env.items():  # the secrets the YAML names as ${VAR}
        monkeypatch.setenv(name, value)
    # Checked offline first, as an operator would.
    assert broker_cli(["check-config", str(finance.config_path)]) == 0
    claims = tmp_path / "adele.json"
    claims.write_text(json.dumps({"tid": CONTOSO_TID, "oid": ADELE.oid, "groups": [FINANCE]}))
    explain = ["policy", "explain", "--config", str(finance.config_path), "--host", "127.0.0.1"]
    explain += ["--path", "/finance/", "--claims", str(claims)]
    assert broker_cli([*explain, "--ip", "10.20.0.7"]) == 0
    assert "decision: allow by finance-members" in capsys.readouterr().out
    assert broker_cli([*explain, "--ip", "198.51.100.7"]) == 3
    assert "decision: deny (403) by office-network-only" in capsys.readouterr().out

    status, seen = await visit(finance, ADELE.username, **IN_OFFICE, **{"Remote-User": "CONTOSO\\admin"})
    assert status == 200
    assert seen["headers"]["Remote-User"] == "CONTOSO\\adele"  # the client's own Remote-User was dropped
    assert seen["assertion"]["valid"] and seen["assertion"]["claims"]["employeeid"] == "E10042"

    status, body = await visit(finance, ADELE.username, **AT_HOME)
    assert status == 403 and "office-network-only" in body["message"]
    denied = [r for r in caplog.records if getattr(r, "event", "") == "access_denied"]
    assert [getattr(r, "rule", "") for r in denied] == ["office-network-only"]
    assert denied[0].user == f"{CONTOSO_TID}:{ADELE.oid}"  # type: ignore[attr-defined]


async def test_a_user_outside_finance_is_refused_in_the_office(
    finance: Stack,
) -> None:
    status, body = await visit(finance, ALEX.username, **IN_OFFICE)
    assert status == 403 and "no rule of this application admits you" in body["message"]


async def test_a_claim_with_cr_lf_cannot_add_a_header(finance: Stack) -> None:
    status, seen = await visit(finance, MALLORY.username, **IN_OFFICE)
    assert status == 200
    value = seen["headers"]["Remote-User"]
    assert "\r" not in value and "\n" not in value  # sent as one RFC 8187 value, decodable by the app
    assert value == "UTF-8''CONTOSO%5Cadele%0D%0ARemote-User%3A%20CONTOSO%5Cadmin"


async def test_a_pre_encoded_claim_is_encoded_again(finance: Stack) -> None:
    status, seen = await visit(finance, PREENCODED.username, **IN_OFFICE)
    assert status == 200
    # An app decoding RFC 8187 reads "UTF-8''%61dmin" as it was, never "admin".
    assert seen["headers"]["X-Employee-Id"] == "UTF-8''UTF-8%27%27%2561dmin"


async def test_a_value_over_the_maximum_length_is_not_sent_rather_than_cut(finance: Stack) -> None:
    # When the broker sends no value (too long, or a claim the user lacks), the client's own never passes:
    # neither for a route's header nor for the company's default header.
    spoofed = {"Remote-User": "CONTOSO\\admin", "X-Employee-Number": "E00001"}
    status, seen = await visit(finance, LONG.username, **IN_OFFICE, **spoofed)
    assert status == 200
    assert "Remote-User" not in seen["headers"] and "X-Employee-Number" not in seen["headers"]

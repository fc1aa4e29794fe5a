"""Route policy end to end (issue 17, stream S): attempts to pass a rule tree, against the whole product.

The recording upstream proves a refused request never reached the application; the audit log says which
rule refused it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.security.conftest import Target, running_target
from tests.security.test_cookies import COOKIE, signed_in_ticket
from tests.support.stack import ADELE

FINANCE_GROUP = ADELE.groups[0]
OFFICE_CLIENT = "10.1.2.3"
ROUTES: list[dict[str, Any]] = [
    {
        "host": "127.0.0.1",
        "path": "/finance/",
        "upstream": "{recorder}",
        "allow": {"login_codes": ["contoso"]},
        "policy": {
            "allow": [{"name": "finance-members", "group": FINANCE_GROUP}],
            "deny": [{"name": "outside-office", "not": {"ip": "10.0.0.0/8"}}],
        },
    },
    {
        "host": "127.0.0.1",
        "path": "/reports/",
        "upstream": "{recorder}",
        "allow": {"login_codes": ["contoso"]},
        "upstream_paths": {"case_insensitive": True},
        "policy": {
            "deny": [
                {"name": "admin-pages", "path": "/reports/admin"},
                {"name": "read-only", "not": {"method": ["GET", "HEAD"]}},
            ]
        },
    },
]


async def serve(tmp_path: Path, trusted: list[str], attack_store: str) -> AsyncIterator[Target]:
    """The target stack with the policy routes, believing forwarding headers from ``trusted`` peers only."""
    server = {"trusted_proxies": trusted}
    async with running_target(tmp_path, server=server, routes_more=ROUTES, store=attack_store) as running:
        yield running


@pytest.fixture
async def direct(tmp_path: Path, attack_store: str) -> AsyncIterator[Target]:
    """Clients reach the gateway directly: no peer is a trusted proxy (127.0.0.2 never connects)."""
    async for running in serve(tmp_path, ["127.0.0.2/32"], attack_store):
        yield running


@pytest.fixture
async def behind_proxy(tmp_path: Path, attack_store: str) -> AsyncIterator[Target]:
    """The test client plays the office's load balancer (127.0.0.0/8 trusted)."""
    async for running in serve(tmp_path, ["127.0.0.0/8"], attack_store):
        yield running


async def fetch(target: Target, ticket: str, path: str, method: str = "GET", **headers: str) -> int:
    """The status of one request as a signed-in API client."""
    sent = {"Accept": "application/json", "Cookie": f"{COOKIE}={ticket}", **headers}
    async with (
        aiohttp.ClientSession() as client,
        client.request(
            method, f"{target.stack.gateway_url}{path}", headers=sent, allow_redirects=False
        ) as resp,
    ):
        return resp.status


def audited_rules(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The ``rule`` of every access_denied audit event logged."""
    return [getattr(r, "rule", "") for r in caplog.records if getattr(r, "event", "") == "access_denied"]


async def test_office_client_through_the_trusted_proxy_is_admitted(behind_proxy: Target) -> None:
    ticket = await signed_in_ticket(behind_proxy.stack)
    assert await fetch(behind_proxy, ticket, "/finance/q1", **{"X-Forwarded-For": OFFICE_CLIENT}) == 200
    assert behind_proxy.paths_seen() == ["/finance/q1"]


async def test_spoofed_office_address_from_an_untrusted_peer_is_refused(
    direct: Target, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "broker.audit")
    ticket = await signed_in_ticket(direct.stack)
    for spoof in ({"X-Forwarded-For": OFFICE_CLIENT}, {"Forwarded": f"for={OFFICE_CLIENT}"}):
        assert await fetch(direct, ticket, "/finance/q1", **spoof) == 403
    assert direct.paths_seen() == []
    assert audited_rules(caplog) == ["outside-office", "outside-office"]


async def test_office_address_claimed_left_of_the_trusted_proxy_is_not_believed(behind_proxy: Target) -> None:
    # The client wrote 10.1.2.3; the office proxy appended the address it really saw.
    ticket = await signed_in_ticket(behind_proxy.stack)
    chain = f"{OFFICE_CLIENT}, 198.51.100.7"
    assert await fetch(behind_proxy, ticket, "/finance/q1", **{"X-Forwarded-For": chain}) == 403
    assert behind_proxy.paths_seen() == []


async def test_refusal_names_the_deciding_rule_and_no_other(
    behind_proxy: Target, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "broker.audit")
    ticket = await signed_in_ticket(behind_proxy.stack, "alex@contoso.example")  # in no group
    sent = {"Accept": "application/json", "Cookie": f"{COOKIE}={ticket}", "X-Forwarded-For": OFFICE_CLIENT}
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"{behind_proxy.stack.gateway_url}/finance/", headers=sent) as resp,
    ):
        assert resp.status == 403
        message = (await resp.json())["message"]
    assert "no rule of this application admits you" in message
    assert "finance-members" not in message and "outside-office" not in message
    assert audited_rules(caplog) == ["no allow rule matched"]


@pytest.mark.parametrize(
    "path",
    [
        "/reports/admin",
        "/reports/admin/",
        "/reports/ADMIN/x",
        "/reports//admin",
        "/reports/%61dmin",
        "/reports/admin;x",
    ],
)
async def test_path_spellings_under_a_denied_path_never_reach_it(direct: Target, path: str) -> None:
    ticket = await signed_in_ticket(direct.stack)
    assert await fetch(direct, ticket, path) in (400, 403)
    assert direct.paths_seen() == []


async def test_method_rules_see_through_no_override_header(direct: Target) -> None:
    ticket = await signed_in_ticket(direct.stack)
    assert await fetch(direct, ticket, "/reports/q1") == 200
    assert await fetch(direct, ticket, "/reports/q1", "DELETE") == 403
    for header in ("X-HTTP-Method-Override", "x-http-method", "X-Method-Override"):
        assert await fetch(direct, ticket, "/reports/q1", **{header: "DELETE"}) == 403
    assert direct.paths_seen() == ["/reports/q1"]

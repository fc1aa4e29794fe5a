"""Each audit event is written where it should be (issue 18): a real sign-in, a replayed callback, a
denied route, a sign-out, a refused refresh, a front-channel logout, a forward-auth call from an untrusted
peer, through the whole stack; and every field of every line keeps one JSON type."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import pytest

from broker.ops.logging import JsonFormatter
from tests.scenarios.test_sessions_lifecycle import stored_session, ticket_of
from tests.support.html import forms
from tests.support.stack import ADELE, CONTOSO_TID, running_stack
from tests.support.traffic import OffsetClock


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The audit events logged so far, as the JSON lines ``broker run`` writes."""
    return [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "broker.audit"]


def events(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    return [line for line in audit_lines(caplog) if line["event"] == event]


async def test_sign_in_replay_denial_and_sign_out_are_audited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    user = f"{CONTOSO_TID}:{ADELE.oid}"
    async with running_stack("memory", tmp_path, {}) as stack, stack.browser() as browser:
        page = await stack.start_login(browser, "contoso", "/")
        form = await stack.pick_user(browser, page, ADELE.username)
        assert (await stack.post_callback(browser, form)).status == 303
        [success] = events(caplog, "login_success")
        assert success["user"] == user and success["company"] == "contoso" and success["audit"] is True
        assert success["roles"] == "admin" and success["logger"] == "broker.audit"

        # The same form_post again (a replayed code and state): refused, and said so.
        async with stack.browser() as attacker:
            assert (await stack.post_callback(attacker, form)).status >= 400
        [failure] = events(caplog, "login_failure")
        assert failure["why"] == "state unknown, replayed or expired" and "user" not in failure

        # Adele (contoso) on the route only fabrikam may use.
        assert (await stack.whoami(browser, "/fabrikam/x"))[0] == 403
        [denied] = events(caplog, "access_denied")
        assert denied["user"] == user and denied["company"] == "contoso"
        assert denied["route"] == "127.0.0.1/fabrikam/" and denied["why"]

        async with browser.get(f"{stack.gateway_url}/.auth/logout") as confirm:
            [sign_out] = [f for f in forms(await confirm.text()) if "csrf" in f.fields]
        async with browser.post(
            urljoin(stack.gateway_url, sign_out.action), data=sign_out.fields, allow_redirects=False
        ) as resp:
            assert resp.status < 400
        [logout] = events(caplog, "logout")
        assert logout["user"] == user and logout["company"] == "contoso"
        assert [line["event"] for line in audit_lines(caplog)] == [
            "login_success",
            "login_failure",
            "access_denied",
            "logout",
        ]

    # One type per field across every line of these flows (access, audit, proxy, gateway), so a log
    # pipeline's schema (Elasticsearch, Loki's JSON parser, BigQuery) never meets a field of two types.
    types: dict[str, set[str]] = defaultdict(set)
    for record in caplog.records:
        for key, value in json.loads(JsonFormatter().format(record)).items():
            if value is not None:
                types[key].add(type(value).__name__)
    assert {key: kinds for key, kinds in types.items() if len(kinds) > 1} == {}


async def test_a_refused_refresh_is_audited_as_a_failure_and_a_revocation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    clock = OffsetClock()
    async with running_stack("memory", tmp_path, {}, clock=clock) as stack, stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        # A new dev IdP state knows no refresh token it issued before: invalid_grant, as Entra answers a
        # revoked one (a password reset, "revoke sessions" in the admin centre).
        await stack.stop_idp()
        await stack.start_idp()
        clock.offset = 56 * 60  # near the ID token's expiry: this request refreshes
        assert (await stack.whoami(browser, "/"))[0] == 401
    user = f"{CONTOSO_TID}:{ADELE.oid}"
    [failure] = events(caplog, "refresh_failure")
    assert failure["user"] == user and failure["company"] == "contoso" and failure["why"]
    [revoked] = events(caplog, "session_revoked")
    assert revoked["user"] == user and revoked["company"] == "contoso" and revoked["why"] == "refresh refused"


async def test_a_front_channel_logout_is_audited_with_the_sessions_it_ended(
    fresh_redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running_stack(fresh_redis_url, tmp_path, {}) as stack, stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        session = await stored_session(stack, ticket_of(browser))
        assert session is not None and session.sid
        async with aiohttp.ClientSession() as entra:
            url = f"{stack.gateway_url}/.auth/frontchannel-logout/contoso"
            for sid in ("unknown-sid", session.sid):  # a sid that ends nothing is not audited
                async with entra.get(url, params={"sid": sid}) as resp:
                    assert resp.status == 200
    [revoked] = events(caplog, "session_revoked")
    assert revoked["why"] == "Entra front-channel logout" and revoked["company"] == "contoso"
    assert revoked["count"] == 1


async def test_a_forward_auth_call_from_an_untrusted_peer_is_audited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = {"trusted_proxies": ["10.0.0.0/8"]}
    async with running_stack("memory", tmp_path, {}, server=server) as stack, stack.browser() as browser:
        async with browser.get(
            f"{stack.gateway_url}/.auth/verify", headers={"X-Original-URL": f"{stack.gateway_url}/docs"}
        ) as resp:
            assert resp.status == 400
    [refused] = events(caplog, "forward_auth_refused")
    assert refused["why"] == "caller is not in server.trusted_proxies" and refused["peer"] == "127.0.0.1"

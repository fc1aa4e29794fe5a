"""Identity reaches the backend only from the gateway: client-sent copies never get through."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from tests.support.stack import ADELE, Stack, running_stack

SPOOFED = {
    "X-Broker-Assertion": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJldmlsIn0.",
    "x-broker-assertion": "lowercase-copy",
    "X_Broker_Assertion": "underscore-copy",
    "X-Remote-User": "ceo@contoso.example",
    "X_REMOTE_USER": "ceo@contoso.example",
    "X-Broker-Anything": "reserved prefix",
}


def header_values(headers: dict[str, object], name: str) -> list[str]:
    """Every value the backend received under a name, in any spelling it could read as the same."""
    wanted = name.lower().replace("_", "-")
    found: list[str] = []
    for key, value in headers.items():
        if key.lower().replace("_", "-") == wanted:
            found += value if isinstance(value, list) else [str(value)]
    return found


@pytest.mark.parametrize("path", ["/", "/public/page", "/open/page"])
async def test_spoofed_identity_headers_never_reach_the_backend(stack: Stack, path: str) -> None:
    async with stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        # Each spelling is a distinct dict key, so each goes out as its own header line.
        status, body = await stack.whoami(browser, path, **SPOOFED)
        assert status == 200
        headers = body["headers"]
        assertions = header_values(headers, "X-Broker-Assertion")
        remote_users = header_values(headers, "X-Remote-User")
        assert not header_values(headers, "X-Broker-Anything")
        for spoofed in SPOOFED.values():
            assert spoofed not in assertions + remote_users
        if path == "/":
            # Exactly the gateway's own assertion, verified by the backend.
            assert len(assertions) == 1 and body["assertion"]["valid"] is True
            assert remote_users == [ADELE.username]
        else:
            # Public paths and routes carry no identity at all.
            assert assertions == [] and remote_users == []


async def test_spoofed_assertion_is_stripped_for_anonymous_requests(stack: Stack) -> None:
    async with stack.browser() as browser:
        status, body = await stack.whoami(browser, "/open/x", **{"X-Broker-Assertion": "forged"})
        assert status == 200
        assert header_values(body["headers"], "X-Broker-Assertion") == []


@pytest.mark.parametrize(
    "raw", ["/public/%2e%2e/secret", "/public/..;/secret", "/public/%2e%2e%2fsecret", "/public/..%5csecret"]
)
async def test_traversal_from_a_public_path_is_refused(stack: Stack, raw: str) -> None:
    """Anonymous: each spelling gets a 400 and never reaches the backend as a public request."""
    async with aiohttp.ClientSession() as client:
        url = URL(f"{stack.gateway_url}{raw}", encoded=True)
        async with client.get(url, headers={"Accept": "application/json"}) as resp:
            body = await resp.json()
            assert resp.status == 400 and body["error"] == "ambiguous_path"


async def test_optional_auth_passes_anonymous_requests_and_identifies_signed_in_ones(tmp_path: Path) -> None:
    """auth: optional is SSO beside the app's own login: no redirect, identity only when signed in."""
    optional = {
        "host": "127.0.0.1",
        "path": "/app/",
        "upstream": "{backend_url}",
        "auth": "optional",
        "headers": {"X-Remote-User": "preferred_username"},
    }
    async with (
        running_stack("memory", tmp_path, {}, routes_extra=[optional]) as stack,
        stack.browser() as browser,
    ):
        async with browser.get(f"{stack.gateway_url}/app/page", allow_redirects=False) as resp:
            assert resp.status == 200  # anonymous: passed through, not redirected
        status, body = await stack.whoami(browser, "/app/page", **SPOOFED)
        assert status == 200 and header_values(body["headers"], "X-Broker-Assertion") == []
        assert header_values(body["headers"], "X-Remote-User") == []  # spoofed copies stripped
        await stack.login(browser, "contoso", ADELE.username)
        status, body = await stack.whoami(browser, "/app/page")
        assert status == 200 and body["assertion"]["valid"] is True
        assert header_values(body["headers"], "X-Remote-User") == [ADELE.username]

"""Every answer passes the request stages (``broker/middleware.py``): a request id, the metrics and an access
line, whatever path or method a request names. The stages wrap each route's handler rather than being an
aiohttp middleware (issue 19), so nothing may be left for aiohttp's router to answer on its own."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from tests.support.stack import running_stack


def access_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, int]]:
    return [
        (r.__dict__["method"], r.__dict__["path"], r.__dict__["status"])
        for r in caplog.records
        if r.name == "broker.access"
    ]


async def test_a_method_a_broker_path_does_not_take_gets_405_through_the_stages(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="broker.access")
    async with running_stack("memory", tmp_path, {}) as stack, stack.browser() as browser:
        for method, path, allowed in (
            ("PUT", "/.auth/logout", {"GET", "HEAD", "POST"}),
            ("DELETE", "/.auth/me", {"GET", "HEAD"}),
            ("POST", "/.auth/login/contoso", {"GET", "HEAD"}),
        ):
            async with browser.request(method, f"{stack.gateway_url}{path}", allow_redirects=False) as resp:
                assert resp.status == 405, (method, path)
                assert set(resp.headers["Allow"].split(",")) == allowed
                assert "X-Request-Id" in resp.headers
            assert (method, path, 405) in access_lines(caplog)
        # The methods a path does take are served as before (HEAD with GET's handler).
        async with browser.head(f"{stack.gateway_url}/.auth/healthz") as resp:
            assert resp.status == 200
        async with browser.get(
            f"{stack.gateway_url}/.auth/me", headers={"Accept": "application/json"}
        ) as resp:
            assert resp.status == 401 and "X-Request-Id" in resp.headers
        # A raised answer (the sign-in redirect of a page load) carries the request id like a returned one.
        async with browser.get(
            f"{stack.gateway_url}/", headers={"Accept": "text/html"}, allow_redirects=False
        ) as resp:
            assert resp.status == 302 and "X-Request-Id" in resp.headers


@pytest.mark.parametrize("path", ["/a%0Ab", "/.auth/x%0Ay", "/.auth/verify/x%0Ay", "/%0A"])
async def test_a_path_with_an_encoded_line_break_is_answered_by_the_broker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    # With a plain ``.*`` tail such a path matched no route and aiohttp's router gave its own 404: no
    # request id, no access line. Now the broker answers it (refused, never proxied as another path).
    caplog.set_level(logging.INFO, logger="broker.access")
    async with running_stack("memory", tmp_path, {}) as stack, aiohttp.ClientSession() as client:
        url = URL(f"{stack.gateway_url}{path}", encoded=True)
        async with client.get(url, allow_redirects=False, headers={"Accept": "application/json"}) as resp:
            assert resp.status in (400, 401, 403, 404), resp.status
            assert "X-Request-Id" in resp.headers
            assert resp.headers["Content-Type"].startswith("application/json")
    assert any(status == resp.status for _, _, status in access_lines(caplog))

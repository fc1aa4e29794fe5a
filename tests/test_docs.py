"""The documentation's verification snippet really verifies the gateway's assertions."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.support.stack import ADELE, Stack

DOC = Path(__file__).parents[1] / "docs" / "backend-verification.md"


def python_snippet(gateway: str, audience: str) -> dict[str, Any]:
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert code is not None
    source = code.group(1).replace('"https://gw.example.com"', repr(gateway))
    source = source.replace('"https://wiki.example.com/"', repr(audience))
    namespace: dict[str, Any] = {}
    exec(compile(source, str(DOC), "exec"), namespace)
    return namespace


async def test_python_snippet_verifies_and_checks_the_audience(stack: Stack) -> None:
    async with stack.browser() as browser:
        await stack.login(browser, "contoso", ADELE.username)
        _, body = await stack.whoami(browser, "/")
    assertion = body["headers"]["X-Broker-Assertion"]
    good = python_snippet(stack.gateway_url, "https://127.0.0.1")
    claims = await asyncio.to_thread(good["verify_broker_assertion"], assertion)
    assert claims["oid"] == ADELE.oid
    wrong_route = python_snippet(stack.gateway_url, "https://127.0.0.1/fabrikam")
    with pytest.raises(jwt.InvalidAudienceError):
        await asyncio.to_thread(wrong_route["verify_broker_assertion"], assertion)
    tampered = assertion[:-4] + ("AAAA" if not assertion.endswith("AAAA") else "BBBB")
    with pytest.raises(jwt.InvalidTokenError):
        await asyncio.to_thread(good["verify_broker_assertion"], tampered)

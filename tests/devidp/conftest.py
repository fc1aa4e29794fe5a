"""Fixtures: one signing key per test session (RSA generation is slow), a fresh IdP per test."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from broker.devidp import SigningKeys
from tests.devidp.harness import DevIdpHarness, FakeClock, make_config, running_devidp


@pytest.fixture(scope="session")
def signing_keys() -> SigningKeys:
    return SigningKeys.generate(time.time())


@pytest.fixture
async def idp(signing_keys: SigningKeys) -> AsyncIterator[DevIdpHarness]:
    async with running_devidp(make_config(), FakeClock(time.time()), signing_keys) as harness:
        yield harness

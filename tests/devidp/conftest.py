"""Fixtures: one signing key and two client certificates per session (RSA is slow), a fresh IdP per test."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest

from devidp import DevIdpConfig, SigningKeys
from tests.devidp.harness import DevIdpHarness, FakeClock, make_config, running_devidp
from tests.support.certs import ClientCertificate

Starter = Callable[[DevIdpConfig], AbstractAsyncContextManager[DevIdpHarness]]


@pytest.fixture(scope="session")
def signing_keys() -> SigningKeys:
    return SigningKeys.generate(time.time())


@pytest.fixture(scope="session")
def client_cert() -> ClientCertificate:
    return ClientCertificate.generate("Entra Broker (Contoso)")


@pytest.fixture(scope="session")
def other_cert() -> ClientCertificate:
    return ClientCertificate.generate("Somebody else")


@pytest.fixture
def start(signing_keys: SigningKeys) -> Starter:
    """Start a dev IdP with a directory of the test's own (keys copied: rotation stays in the test)."""

    def starter(config: DevIdpConfig) -> AbstractAsyncContextManager[DevIdpHarness]:
        return running_devidp(config, FakeClock(time.time()), signing_keys.copy())

    return starter


@pytest.fixture
async def idp(start: Starter) -> AsyncIterator[DevIdpHarness]:
    async with start(make_config()) as harness:
        yield harness

"""Browser fixtures: one headless Debian Chromium per module, a fresh context (no cookies) per test.

Everything async runs in the module's event loop: Playwright's driver, the browser, and the servers of
``running_stack``, so the browser talks to servers served by the very loop that awaits the browser.
Chromium comes from Debian (``scripts/ensure-chromium.sh``), never from ``playwright install``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, Request, async_playwright

from tests.support.stack import Stack, running_stack

CHROMIUM = Path("/usr/bin/chromium")
# Headless, no sandbox (containers run as root), and no traffic of the browser's own (updates, sync,
# field trials), so every request a test sees comes from the pages under test.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
# Fail fast: every step on loopback takes milliseconds; a missing element should not cost 30 s.
STEP_TIMEOUT_MS = 10_000
LOOPBACK = "http://127.0.0.1"


@dataclass
class Tab:
    """One page in a fresh browser context, the URLs it requested, and where its screenshots go."""

    page: Page
    artifacts: Path
    test_name: str
    requests: list[str] = field(default_factory=list)

    async def shot(self, step: str) -> Path:
        """Save a full-page screenshot as ``test-artifacts/browser/{test}-{step}.png``."""
        path = self.artifacts / f"{self.test_name}-{step}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    def off_loopback(self) -> list[str]:
        """Every URL requested so far that did not go to 127.0.0.1."""
        return [url for url in self.requests if not url.startswith(LOOPBACK)]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember each phase's outcome on the test item, so ``tab`` can screenshot a failure."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, shared by the module's tests. Missing Chromium fails, never skips."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: the browser tests need Debian's chromium package. "
            "Run scripts/ensure-chromium.sh as root (make test does) or `sudo apt-get install chromium`.",
            pytrace=False,
        )
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def live(tmp_path: Path) -> AsyncIterator[Stack]:
    """The whole product (dev IdP, whoami backend, gateway) with the memory store, in the module's loop."""
    async with running_stack("memory", tmp_path, {}) as stack:
        yield stack


@pytest_asyncio.fixture(loop_scope="module")
async def tab(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Tab]:
    """A new context (its own cookies) and page; records every request; screenshots a failed test."""
    artifacts = request.config.rootpath / "test-artifacts" / "browser"
    artifacts.mkdir(parents=True, exist_ok=True)
    context = await browser.new_context(viewport={"width": 1000, "height": 760}, locale="en-US")
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = await context.new_page()
    tab = Tab(page, artifacts, re.sub(r"[^\w.-]+", "_", request.node.name))

    def record(req: Request) -> None:
        tab.requests.append(req.url)

    context.on("request", record)
    try:
        yield tab
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            await tab.shot("failure")
    finally:
        await context.close()

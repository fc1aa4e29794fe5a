"""Every gateway page in real Chromium, in light, dark and mobile width: screenshots kept as artifacts.

Images land in ``test-artifacts/screenshots/{mode}-{page}.png`` (git-ignored). Each is checked not to be
blank (decoded by Chromium itself, counting colours), and at mobile width no page may scroll sideways.
The company page carries an accent colour and an inline logo; one pass in French shows the longer strings.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, expect

from devidp import DevUser
from tests.scenarios.browser.test_browser_login import CHOOSER_LABEL, wait_until_on
from tests.support.stack import ADELE, Stack, devidp_config, running_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

STEP_TIMEOUT_MS = 10_000
MOBILE_WIDTH = 360
MODES: dict[str, dict[str, Any]] = {
    "light": {"viewport": {"width": 1000, "height": 760}, "color_scheme": "light"},
    "dark": {"viewport": {"width": 1000, "height": 760}, "color_scheme": "dark"},
    "mobile": {
        "viewport": {"width": MOBILE_WIDTH, "height": 740},
        "color_scheme": "light",
        "is_mobile": True,
    },
}
# A blocked user (Conditional Access, AADSTS53003): the dev IdP sends Entra's error back, so the gateway's
# explained login-error page, with Entra's long message, is reached the way a user reaches it.
BLOCKED = DevUser(
    oid="9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    name="Blocked User",
    username="blocked@contoso.example",
    authorize_error=53003,
)
LOGO_SVG = (
    "data:image/svg+xml;base64,"
    "PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHdpZHRoPSIxNjAiIGhlaWdodD0iNDAiPjxyZWN0IHdpZHRo"
    "PSI0MCIgaGVpZ2h0PSI0MCIgcng9IjgiIGZpbGw9IiM3YTFmYTIiLz48dGV4dCB4PSI1MCIgeT0iMjgiIGZvbnQtc2l6ZT0iMjIi"
    "IGZvbnQtZmFtaWx5PSJzYW5zLXNlcmlmIiBmaWxsPSIjN2ExZmEyIj5Db250b3NvPC90ZXh0Pjwvc3ZnPg=="
)
BRANDING = {"accent_color": "#7a1fa2", "logo_url": LOGO_SVG, "listed": True}

# Decoded by Chromium from the PNG file: how many distinct colours (capped), so a blank image shows as 1.
COLOURS_JS = """async (src) => {
  const img = new Image(); img.src = src; await img.decode();
  const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data; const seen = new Set();
  for (let i = 0; i < d.length && seen.size < 64; i += 4 * 7) seen.add((d[i] << 16) | (d[i+1] << 8) | d[i+2]);
  return seen.size;
}"""
# How many lines a piece of text spans (one client rect per line box it lies on).
LINES_JS = """(el) => { const r = document.createRange(); r.selectNodeContents(el);
  return r.getClientRects().length; }"""
# The link's colour and the page's accent, both as the browser computes them.
LINK_COLOUR_JS = """(a) => { const probe = document.createElement('span');
  probe.style.color = 'var(--accent)'; document.body.append(probe);
  const want = getComputedStyle(probe).color; probe.remove();
  return [getComputedStyle(a).color, want]; }"""
OVERFLOW_JS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


@pytest_asyncio.fixture(loop_scope="module")
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """The product with Contoso branded (colour, logo, listed) and a user Entra blocks."""
    idp = devidp_config()
    idp.tenants[0].users = [*idp.tenants[0].users, BLOCKED]
    async with running_stack("memory", tmp_path, {}, idp_config=idp, contoso=BRANDING) as running:
        yield running


class Shots:
    """Takes each page's screenshot and checks it: not blank, and (at mobile width) no sideways scroll."""

    def __init__(self, context: BrowserContext, folder: Path, mode: str) -> None:
        self.context, self.folder, self.mode = context, folder, mode
        self.taken: list[Path] = []

    async def take(self, page: Page, name: str) -> None:
        path = self.folder / f"{self.mode}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        overflow = await page.evaluate(OVERFLOW_JS)
        if self.mode == "mobile":
            assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {MOBILE_WIDTH}px"
        checker = await self.context.new_page()
        try:
            await checker.goto("about:blank")
            src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
            assert await checker.evaluate(COLOURS_JS, src) > 3, f"{path} is blank"
        finally:
            await checker.close()


async def _new_context(browser: Browser, mode: str, locale: str = "en-US") -> BrowserContext:
    context = await browser.new_context(locale=locale, **MODES[mode])
    context.set_default_timeout(STEP_TIMEOUT_MS)
    return context


@pytest.mark.parametrize("mode", MODES)
async def test_every_page_in_light_dark_and_mobile(
    browser: Browser, stack: Stack, mode: str, request: pytest.FixtureRequest
) -> None:
    folder = request.config.rootpath / "test-artifacts" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    gw = stack.gateway_url
    context = await _new_context(browser, mode)
    shots = Shots(context, folder, mode)
    try:
        page = await context.new_page()
        await page.goto(f"{gw}/.auth/login")
        await shots.take(page, "chooser")
        await page.get_by_label(CHOOSER_LABEL).fill("someone.with.a.long.name@unknown-company.example")
        await page.get_by_role("button", name="Continue").click()
        await expect(page.get_by_role("alert")).to_be_visible()
        await shots.take(page, "chooser-unknown")
        # What the user typed stays in the field, to be corrected rather than retyped.
        await expect(page.get_by_label(CHOOSER_LABEL)).to_have_value(
            "someone.with.a.long.name@unknown-company.example"
        )
        link_colour, accent = await page.get_by_role("link", name="Contoso Ltd").evaluate(LINK_COLOUR_JS)
        assert link_colour == accent
        await page.goto(f"{gw}/.auth/login/contoso-sales-and-marketing-emea")
        await shots.take(page, "unknown-company")
        assert await page.locator("main p code").evaluate(LINES_JS) == 1  # the code is never split
        await page.goto(f"{gw}/.auth/nothing-here")
        await shots.take(page, "not-found")

        await page.goto(f"{gw}/.auth/login/contoso?rd=/")
        await expect(page.locator("img.logo")).to_be_visible()
        await shots.take(page, "company")
        await page.get_by_role("link", name="Sign in with Microsoft").click()
        await wait_until_on(page, stack.idp_url)
        await page.get_by_role("button", name=BLOCKED.name).first.click()
        await wait_until_on(page, gw, "/.auth/callback")
        await page.get_by_text("Details for your administrator").click()
        await shots.take(page, "login-error")

        await page.goto(f"{gw}/.auth/login/contoso?rd=/")
        await page.get_by_role("link", name="Sign in with Microsoft").click()
        await wait_until_on(page, stack.idp_url)
        await page.get_by_role("button", name=ADELE.name).first.click()
        await wait_until_on(page, gw, "/")
        await page.goto(f"{gw}/.auth/logout")
        await shots.take(page, "logout-confirm")
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_role("heading", name="You are signed out")).to_be_visible()
        await shots.take(page, "signed-out")
        # A label on two lines (mobile) is centred like a one-line label.
        for button in await page.locator("a.button").all():
            assert await button.evaluate("(b) => getComputedStyle(b).textAlign") == "center"

        await page.goto(stack.idp_url + "/")
        await shots.take(page, "devidp-index")

        french = await _new_context(browser, mode, locale="fr-FR")
        try:
            fr_page = await french.new_page()
            await fr_page.goto(f"{gw}/.auth/login/contoso?rd=/")
            await expect(fr_page.get_by_role("link", name="Se connecter avec Microsoft")).to_be_visible()
            await shots.take(fr_page, "company-fr")
            await fr_page.goto(f"{gw}/.auth/login/contoso-sales-and-marketing-emea")
            await shots.take(fr_page, "unknown-company-fr")
        finally:
            await french.close()
    finally:
        await context.close()
    assert len(shots.taken) == 11

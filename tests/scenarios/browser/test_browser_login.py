"""The product as a person sees it: headless Chromium through company page, dev IdP, callback and logout.

The same flows as ``tests/scenarios/test_login_flow.py``, but with a real browser: redirects, the IdP's
auto-submitted form_post, cookies, ``<details>`` and form labels behave as they do for users. Screenshots of
the key steps land in ``test-artifacts/browser/``.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect
from yarl import URL

from tests.scenarios.browser.conftest import Tab
from tests.support.stack import ADELE, MEGAN, Stack

# The module's tests share one browser, so they share its event loop (see conftest.py).
pytestmark = pytest.mark.asyncio(loop_scope="module")

CHOOSER_LABEL = "Company login code or work email"
NOT_FOUND = "We could not find your company"

# Every input a person can type into has a name: a <label for> or an aria-label.
UNLABELLED_INPUTS_JS = """() => {
  const inputs = [...document.querySelectorAll('input')].filter(i => i.type !== 'hidden');
  const named = i => (i.getAttribute('aria-label') || '').trim() !== ''
    || (i.id !== '' && document.querySelector(`label[for="${CSS.escape(i.id)}"]`) !== null);
  return {visible: inputs.length, unlabelled: inputs.filter(i => !named(i)).map(i => i.outerHTML)};
}"""


async def wait_until_on(page: Page, origin: str, path: str | None = None) -> None:
    """Wait until the browser has landed on ``origin`` (and ``path``), after any redirects and form posts."""

    def arrived(url: str) -> bool:
        # The trailing slash keeps http://127.0.0.1:4000 from matching http://127.0.0.1:40001.
        return url.startswith(origin + "/") and (path is None or URL(url).path == path)

    await page.wait_for_url(arrived)


async def open_idp_from_company_page(tab: Tab, stack: Stack, step: str = "0-company-page") -> None:
    """Contoso's page -> "Sign in with Microsoft" -> the dev IdP's account picker."""
    page = tab.page
    await page.goto(f"{stack.gateway_url}/.auth/login/contoso?rd=/")
    await expect(page.get_by_role("heading", name="Sign in to Contoso Ltd")).to_be_visible()
    await tab.shot(step)
    await page.get_by_role("link", name="Sign in with Microsoft").click()
    await wait_until_on(page, stack.idp_url)
    await expect(page.get_by_role("heading", name="Contoso", exact=True)).to_be_visible()


async def sign_in_as_adele(tab: Tab, stack: Stack) -> None:
    """A complete login in the browser, ending on the whoami page behind the gateway."""
    await open_idp_from_company_page(tab, stack)
    await tab.page.get_by_role("button", name=ADELE.name).click()
    await wait_until_on(tab.page, stack.gateway_url, "/")
    await expect(tab.page.get_by_role("status")).to_contain_text(f"Signed in as {ADELE.name}")


async def test_company_page_to_dev_idp_to_backend_showing_the_user(tab: Tab, live: Stack) -> None:
    page = tab.page
    await page.goto(f"{live.gateway_url}/.auth/login/contoso?rd=/")
    await expect(page.get_by_role("heading", name="Sign in to Contoso Ltd")).to_be_visible()
    await expect(page.get_by_text("Use your Contoso work account.")).to_be_visible()
    await tab.shot("1-company-page")

    await page.get_by_role("link", name="Sign in with Microsoft").click()
    await wait_until_on(page, live.idp_url)
    await expect(page.get_by_role("heading", name="Contoso", exact=True)).to_be_visible()
    await tab.shot("2-dev-idp")

    # The IdP answers with a self-submitting form_post; the gateway's callback then redirects to rd.
    own_accounts = page.get_by_role("region", name="Accounts in Contoso")
    await own_accounts.get_by_role("button", name=ADELE.name).click()
    await wait_until_on(page, live.gateway_url, "/")
    status = page.get_by_role("status")
    await expect(status).to_contain_text(f"Signed in as {ADELE.name}")
    await expect(status).to_contain_text("contoso")
    # Wiki.Admin is mapped to the broker role "admin", which the assertion carries to the backend.
    await expect(page.locator("ul.roles li")).to_have_text(["admin"])
    await tab.shot("3-whoami")
    assert tab.off_loopback() == []


async def test_anonymous_visit_and_company_chooser(tab: Tab, live: Stack) -> None:
    page = tab.page
    # The route at / allows only contoso, so an anonymous browser is sent straight to Contoso's page.
    await page.goto(f"{live.gateway_url}/")
    await wait_until_on(page, live.gateway_url, "/.auth/login/contoso")
    await expect(page.get_by_role("heading", name="Sign in to Contoso Ltd")).to_be_visible()
    await tab.shot("1-anonymous-to-company-page")

    # Home-realm discovery: the work email's domain finds the company.
    await page.goto(f"{live.gateway_url}/.auth/login")
    await page.get_by_label(CHOOSER_LABEL).fill(ADELE.username)
    await tab.shot("2-chooser-email")
    await page.get_by_role("button", name="Continue").click()
    await wait_until_on(page, live.gateway_url, "/.auth/login/contoso")
    await expect(page.get_by_role("heading", name="Sign in to Contoso Ltd")).to_be_visible()
    await tab.shot("3-chooser-found-contoso")

    # An unknown domain: a plain message, and no company (name or login code) is given away.
    await page.goto(f"{live.gateway_url}/.auth/login")
    await page.get_by_label(CHOOSER_LABEL).fill("x@unknown.example")
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("alert")).to_contain_text(NOT_FOUND)
    await expect(page.get_by_label(CHOOSER_LABEL)).to_be_visible()
    text = (await page.locator("body").inner_text()).lower()
    assert not any(name in text for name in ("contoso", "fabrikam")), text
    await tab.shot("4-chooser-unknown")


async def test_user_of_another_company_sees_an_explained_error(tab: Tab, live: Stack) -> None:
    page = tab.page
    await open_idp_from_company_page(tab, live)
    other = page.get_by_role("region", name="Use another account")
    await expect(other).to_contain_text("Fabrikam")
    await tab.shot("1-dev-idp-other-account")
    await other.get_by_role("button", name=MEGAN.name).click()

    await wait_until_on(page, live.gateway_url, "/.auth/callback")
    await expect(page.get_by_role("heading", name="Wrong account for this company")).to_be_visible()
    retry = page.get_by_role("link", name="Try again")
    await expect(retry).to_have_attribute("href", "/.auth/login/contoso")

    # The administrator's details are there but folded away until asked for.
    details = page.locator("details")
    await expect(details.locator("summary")).to_have_text("Details for your administrator")
    await expect(details).to_have_js_property("open", False)
    await expect(details.get_by_text("AADSTS50020").first).to_be_hidden()
    await tab.shot("2-error-collapsed")
    await details.locator("summary").click()
    await expect(details).to_have_js_property("open", True)
    await expect(details.get_by_text("AADSTS50020").first).to_be_visible()
    await tab.shot("3-error-details-open")

    # No session was created: the protected page still asks for a login.
    await page.goto(f"{live.gateway_url}/")
    await wait_until_on(page, live.gateway_url, "/.auth/login/contoso")


async def test_logout_in_the_browser(tab: Tab, live: Stack) -> None:
    page = tab.page
    await sign_in_as_adele(tab, live)

    # GET only asks (a cross-site link cannot sign anyone out); the button posts with a CSRF token.
    await page.goto(f"{live.gateway_url}/.auth/logout")
    await expect(page.get_by_role("heading", name="Sign out?")).to_be_visible()
    await expect(page.get_by_role("main")).to_contain_text(f"You are signed in as {ADELE.name}")
    await tab.shot("1-confirm")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="You are signed out")).to_be_visible()
    microsoft = page.get_by_role("link", name="Also sign out of your Microsoft account")
    await expect(microsoft).to_be_visible()
    assert (await microsoft.get_attribute("href") or "").startswith(live.idp_url + "/")
    await tab.shot("2-signed-out")

    await page.goto(f"{live.gateway_url}/")
    await wait_until_on(page, live.gateway_url, "/.auth/login/contoso")
    await expect(page.get_by_role("heading", name="Sign in to Contoso Ltd")).to_be_visible()
    await tab.shot("3-back-to-login")


async def assert_accessible_basics(page: Page, min_inputs: int = 0) -> None:
    """``html[lang]`` set; every visible input named by a ``<label for>`` or an aria-label."""
    lang = await page.locator("html").get_attribute("lang")
    assert lang and lang.strip(), f"{page.url}: html[lang] is missing"
    found = await page.evaluate(UNLABELLED_INPUTS_JS)
    assert found["unlabelled"] == [], f"{page.url}: inputs without a label: {found['unlabelled']}"
    assert found["visible"] >= min_inputs, f"{page.url}: expected at least {min_inputs} input(s)"


async def test_gateway_pages_accessibility_basics_and_loopback_only(tab: Tab, live: Stack) -> None:
    page = tab.page
    await page.goto(f"{live.gateway_url}/.auth/login/contoso")
    await assert_accessible_basics(page)
    await tab.shot("1-company-page")

    await page.goto(f"{live.gateway_url}/.auth/login")
    await assert_accessible_basics(page, min_inputs=1)
    await tab.shot("2-chooser")
    await page.get_by_label(CHOOSER_LABEL).fill("nobody@unknown.example")
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("alert")).to_contain_text(NOT_FOUND)
    await assert_accessible_basics(page, min_inputs=1)
    await tab.shot("3-chooser-error")

    await open_idp_from_company_page(tab, live, "4-company-page-again")
    await page.get_by_role("button", name=MEGAN.name).click()
    await expect(page.get_by_role("heading", name="Wrong account for this company")).to_be_visible()
    await assert_accessible_basics(page)
    await tab.shot("5-error-page")

    # The pages load no fonts, scripts or images from elsewhere: the gateway often has no egress.
    assert len(tab.requests) >= 6, tab.requests
    assert tab.off_loopback() == []

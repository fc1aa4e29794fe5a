"""The pages as served: the browser's language, what the chooser keeps, and text never formatted or split.

The layout's rendering (wrapping, alignment, overflow) is checked in real Chromium by
``tests/scenarios/browser/test_screenshots.py``; here, what the HTML and headers say.
"""

from __future__ import annotations

from html import unescape
from pathlib import Path

import aiohttp

from broker.http.pages import views
from broker.http.pages.render import template, template_names
from tests.http.test_escaping import parse
from tests.support.stack import running_stack

FRENCH = {"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"}


async def _get(browser: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> aiohttp.ClientResponse:
    async with browser.get(url, allow_redirects=False, headers=headers) as resp:
        await resp.read()
        return resp


async def test_pages_follow_the_browsers_language(tmp_path: Path) -> None:
    async with running_stack("memory", tmp_path, {}) as stack:
        gw = stack.gateway_url
        async with stack.browser() as browser:
            cases = (({}, "Sign in to Contoso Ltd", "en"), (FRENCH, "Se connecter à", "fr"))
            for headers, heading, lang in cases:
                resp = await _get(browser, f"{gw}/.auth/login/contoso", headers)
                text = await resp.text()
                assert heading in text and f'<html lang="{lang}">' in text
                assert resp.headers["Content-Language"] == lang
                assert "Accept-Language" in resp.headers["Vary"]
            # Error pages from the middleware and the handlers too: a 404 and the unknown company.
            resp = await _get(browser, f"{gw}/.auth/nothing-here", FRENCH)
            assert resp.status == 404 and "Il n'y a rien à cette adresse." in unescape(await resp.text())
            resp = await _get(browser, f"{gw}/.auth/login/nobody", FRENCH)
            text = unescape(await resp.text())
            assert "Aucune entreprise n'a le code de connexion <code>nobody</code>." in text
            # A language not shipped falls back to English.
            resp = await _get(browser, f"{gw}/.auth/login", {"Accept-Language": "de-DE,de"})
            assert resp.headers["Content-Language"] == "en" and "Company login code" in await resp.text()


async def test_the_chooser_keeps_what_the_user_typed(tmp_path: Path) -> None:
    typed = 'Jane@Unknown.example"><b>x</b>'
    async with running_stack("memory", tmp_path, {}) as stack:
        async with stack.browser() as browser:
            async with browser.post(f"{stack.gateway_url}/.auth/login", data={"who": f"  {typed} "}) as resp:
                assert resp.status == 404
                parsed = parse(await resp.text())
    inputs = [attrs for tag, attrs in parsed.elements if tag == "input" and attrs.get("name") == "who"]
    assert [i["value"] for i in inputs] == [typed]  # as typed (case kept, spaces trimmed), never as markup
    assert not any(tag == "b" for tag, _ in parsed.elements)


def test_a_message_that_is_not_in_the_catalogue_is_shown_as_given_never_formatted() -> None:
    """A 403 message carries the user's name; braces in it must not reach str.format (crash or leak)."""
    message = "You are signed in as {0} {x.__class__} {}"
    response = views.simple("You don't have access", message, 403, "rid")
    assert response.status == 403 and response.text is not None
    assert parse(response.text).shows(message)


def test_prose_never_breaks_mid_word() -> None:
    """``word-break: break-all`` split Entra's message ("fr om"); long tokens wrap only where they must."""
    layout = Path(template("layout.html").filename or "").read_text()
    assert "break-all" not in layout and "overflow-wrap:anywhere" in layout
    response = views.login_error(
        views.Explanation("Sign-in failed", "Microsoft could not sign you in.", "See the logs."),
        code=50105,
        error="access_denied",
        description="AADSTS50105: Your administrator has configured the application to block users.",
        correlation_id="c0ffee",
        retry_url="/.auth/login/contoso",
        request_id="rid",
    )
    assert response.text is not None
    # Entra's prose is a paragraph of text, not a <code> token that may break anywhere.
    assert '<p class="muted raw" lang="en">AADSTS50105: Your administrator' in response.text


def test_every_page_template_compiles() -> None:
    """Templates compile on first use (not at start-up): a broken one must fail here, not on a request."""
    names = template_names()
    assert "layout.html" in names and len(names) > 5
    for name in names:
        assert template(name).render is not None

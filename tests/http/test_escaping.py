"""Every value a gateway page shows is escaped: markup, attribute break-outs and template syntax in any of
them come out as the same text, never as elements, attributes or evaluated expressions.

First each page function alone (every value it takes, one marked payload per value), then the pages the
running gateway serves from values an attacker or an operator controls (config, Entra's answer, the user's
name, the callback's fields).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from broker.config.schema import TenantConfig
from broker.http.pages import views
from broker.oidc.errors import Explanation
from tests.security.test_login_flow_bounds import started_state
from tests.support.stack import CONTOSO_CLIENT, CONTOSO_TID, MEGAN, devidp_config, running_stack

PAYLOADS = {
    "script": "<script>alert(1)</script>",
    "attribute": "\"'><img src=x onerror=alert(1)>",
    "template": "{{7*7}}",
}
# The one script any page may carry: the callback bounce's auto-submit, allowed by the response's nonce.
BOUNCE_SCRIPT = 'document.getElementById("continue").submit()'


@dataclass
class Parsed:
    """A page as a browser's parser sees it: elements with their attributes, and the text between them."""

    elements: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)

    def shows(self, value: str) -> bool:
        """Whether ``value`` is, unchanged, inside one text run or one attribute value."""
        return any(value in t for t in self.texts) or any(
            value in v for _, attrs in self.elements for v in attrs.values()
        )


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parsed = Parsed()
        self._text = ""
        self._in_script = False

    def _flush(self) -> None:
        if self._text:
            (self.parsed.scripts if self._in_script else self.parsed.texts).append(self._text)
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._flush()
        self.parsed.elements.append((tag, {k: v or "" for k, v in attrs}))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._flush()
        self._in_script = False

    def handle_data(self, data: str) -> None:
        self._text += data


def parse(html: str) -> Parsed:
    """Parse ``html`` with the standard library's HTML parser (the way a browser tokenises it)."""
    parser = _Parser()
    parser.feed(html)
    parser.close()
    parser._flush()
    return parser.parsed


def assert_escaped(html: str, csp: str, shown: list[str]) -> None:
    """Nothing injected became markup, and every value in ``shown`` reads back exactly as it was given."""
    parsed = parse(html)
    assert "<script>alert" not in html and "<img src=x" not in html
    for tag, attrs in parsed.elements:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert not (tag == "img" and attrs.get("src") == "x"), attrs
    nonce = re.search(r"'nonce-([^']+)'", csp)
    script_elements = [attrs for tag, attrs in parsed.elements if tag == "script"]
    if nonce is None:
        assert script_elements == [] and parsed.scripts == []
    else:  # the bounce page: its own script only, carrying the CSP's nonce
        assert script_elements == [{"nonce": nonce.group(1)}] and parsed.scripts == [BOUNCE_SCRIPT]
    for value in shown:  # read back as given: so "{{7*7}}" in it was not evaluated to 49 either
        assert parsed.shows(value), f"{value!r} is not shown as given"


def marked(payload: str, name: str) -> str:
    """``payload`` tagged with the value it was put in, so each value is found on its own."""
    return f"[{name}]{payload}"


def tenant_with(display_name: str, note: str, logo_url: str) -> TenantConfig:
    """A company whose user-visible values are the given ones."""
    return TenantConfig(
        display_name=display_name,
        tenant_id=CONTOSO_TID,
        client_id=CONTOSO_CLIENT,
        note=note,
        logo_url=logo_url,
    )


# Each page function, called with the payload in every value it takes; returns the response and the values
# the page must show (a CSRF token or nonce is shown in a hidden field or attribute, which counts).
PageCase = Callable[[str], tuple[web.Response, list[str]]]


def _company_login(p: str) -> tuple[web.Response, list[str]]:
    values = [marked(p, n) for n in ("name", "note", "start", "rid")]
    # The config admits no markup in a logo URL (formats.logo_url); '&' is allowed and read back as given.
    logo = "https://logo.example/logo.png?size=48&theme=dark"
    tenant = tenant_with(values[0], values[1], logo)
    return views.company_login(tenant, values[2], values[3]), [*values, logo]


def _unknown_company(p: str) -> tuple[web.Response, list[str]]:
    values = [marked(p, n) for n in ("code", "listed-code", "listed-name", "rid")]
    return views.unknown_company(values[0], [(values[1], values[2])], values[3]), values


def _chooser(p: str) -> tuple[web.Response, list[str]]:
    values = [marked(p, n) for n in ("rd", "listed-code", "listed-name", "rid", "message", "who")]
    page = views.chooser(values[0], [(values[1], values[2])], values[3], message=values[4], who=values[5])
    return page, values


def _login_error(p: str) -> tuple[web.Response, list[str]]:
    values = [
        marked(p, n) for n in ("title", "user", "admin", "error", "description", "corr", "retry", "rid")
    ]
    explanation = Explanation(values[0], values[1], values[2])
    response = views.login_error(
        explanation,
        code=50105,
        error=values[3],
        description=values[4],
        correlation_id=values[5],
        retry_url=values[6],
        request_id=values[7],
    )
    return response, values


def _simple(p: str) -> tuple[web.Response, list[str]]:
    values = [marked(p, n) for n in ("title", "message", "rid", "href", "label")]
    return views.simple(values[0], values[1], 403, values[2], link=(values[3], values[4])), values


def _logout_confirm(p: str) -> tuple[web.Response, list[str]]:
    values = [marked(p, n) for n in ("csrf", "who", "rid")]
    return views.logout_confirm(values[0], values[1], values[2]), values


def _signed_out(p: str) -> tuple[web.Response, list[str]]:
    values = [marked(p, n) for n in ("entra", "login", "rid")]
    return views.signed_out(values[0], values[1], values[2]), values


def _callback_bounce(p: str) -> tuple[web.Response, list[str]]:
    fields = {name: marked(p, name) for name in views.BOUNCE_FIELDS}
    rid = marked(p, "rid")
    return views.callback_bounce(fields, rid), [*fields.values(), rid]


PAGES: dict[str, PageCase] = {
    "company_login": _company_login,
    "unknown_company": _unknown_company,
    "chooser": _chooser,
    "login_error": _login_error,
    "simple": _simple,
    "logout_confirm": _logout_confirm,
    "signed_out": _signed_out,
    "callback_bounce": _callback_bounce,
}


def test_every_page_function_is_covered() -> None:
    """A new page must join PAGES, so it cannot ship without this escaping test."""
    public = {
        name
        for name, fn in inspect.getmembers(views, inspect.isfunction)
        if fn.__module__ == views.__name__ and not name.startswith("_")
    }
    assert public == set(PAGES)


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
@pytest.mark.parametrize("page", PAGES.values(), ids=PAGES.keys())
def test_every_value_of_every_page_is_escaped(page: PageCase, payload: str) -> None:
    response, shown = page(payload)
    assert response.text is not None
    assert_escaped(response.text, response.headers["Content-Security-Policy"], shown)


# --- The same through the running gateway, from the places such values really come from --------------

ATTACK = PAYLOADS["script"] + PAYLOADS["attribute"] + PAYLOADS["template"]


async def _get(browser: aiohttp.ClientSession, url: str, status: int) -> tuple[str, str]:
    async with browser.get(url, allow_redirects=False) as resp:
        text = await resp.text()
        assert resp.status == status, text
        return text, resp.headers["Content-Security-Policy"]


async def test_the_gateway_escapes_config_entra_and_user_values(tmp_path: Path) -> None:
    """Company name and note (config), Entra's error and description, a user's name, callback fields."""
    idp = devidp_config()
    fabrikam = idp.tenants[1]
    fabrikam.users = [dataclasses.replace(MEGAN, name=marked(ATTACK, "user"))]
    company = {"display_name": marked(ATTACK, "company"), "note": marked(ATTACK, "note"), "listed": True}
    async with running_stack("memory", tmp_path, {}, idp_config=idp, contoso=company) as stack:
        gw = stack.gateway_url
        async with stack.browser() as browser:
            page, csp = await _get(browser, f"{gw}/.auth/login/contoso", 200)
            assert_escaped(page, csp, [company["display_name"], company["note"]])
            page, csp = await _get(browser, f"{gw}/.auth/login", 200)  # the chooser lists the company
            assert_escaped(page, csp, [company["display_name"]])
            page, csp = await _get(browser, f"{gw}/.auth/login/nobody", 404)
            assert_escaped(page, csp, [company["display_name"]])

            # Entra's answer: the error and its description (with an AADSTS code) are attacker-chosen.
            state = await started_state(stack, browser)
            error, description = marked(ATTACK, "e")[:64], "AADSTS50105: " + marked(ATTACK, "description")
            fields = {"state": state, "error": error, "error_description": description}
            async with browser.post(f"{gw}/.auth/callback", data=fields) as resp:
                assert resp.status == 400
                assert_escaped(
                    await resp.text(), resp.headers["Content-Security-Policy"], [error, description]
                )

        # A cross-site form_post (no binding cookie) is re-posted by the bounce page, fields and all.
        async with stack.browser() as browser:
            state = await started_state(stack, browser)
        async with stack.browser() as other:
            fields = {"state": state, "code": marked(ATTACK, "code"), "session_state": marked(ATTACK, "ss")}
            async with other.post(f"{gw}/.auth/callback", data=fields) as resp:
                assert resp.status == 200
                text = await resp.text()
                assert_escaped(text, resp.headers["Content-Security-Policy"], list(fields.values()))
                assert 'name="bounced"' in text

        # The user's name (from the ID token) on the 403 page and the sign-out confirmation.
        async with stack.browser() as browser:
            await stack.login(browser, "fabrikam", MEGAN.username, rd=f"{gw}/fabrikam/")
            name = marked(ATTACK, "user")
            page, csp = await _get(browser, f"{gw}/", 403)
            assert_escaped(page, csp, [name])
            page, csp = await _get(browser, f"{gw}/.auth/logout", 200)
            assert_escaped(page, csp, [name])

"""A company's accent colour and logo: the config admits only what is safe in a stylesheet and a CSP, and
each page's Content-Security-Policy allows exactly the company's logo and no other image.
"""

from __future__ import annotations

import base64
from pathlib import Path

import aiohttp
import pytest
from pydantic import ValidationError

from broker.config.schema import TenantConfig
from broker.http.pages.branding import accent_css, contrast, logo_source
from tests.support.stack import CONTOSO_CLIENT, CONTOSO_TID, running_stack

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()


def tenant(**fields: str) -> TenantConfig:
    """A company with ``fields`` set (validated exactly as a config file's values are)."""
    return TenantConfig(display_name="Contoso", tenant_id=CONTOSO_TID, client_id=CONTOSO_CLIENT, **fields)


@pytest.mark.parametrize("color", ["#0b5cad", "#08C", "#FFFFFF"])
def test_hex_colours_are_accepted(color: str) -> None:
    assert tenant(accent_color=color).accent_color == color


@pytest.mark.parametrize(
    "color",
    [
        "red",  # a name is not a hex colour (and names like "currentcolor" leak nothing, but keep one syntax)
        "#0b5cad; } body { display:none",  # closes the rule: CSS injection into the page's stylesheet
        "#0b5cad</style><script>alert(1)</script>",  # closes the element
        "#12345",
        "#0b5cad00",
        "0b5cad",
        "var(--x)",
        "url(https://evil.example/x)",
    ],
)
def test_anything_but_a_hex_colour_is_refused(color: str) -> None:
    with pytest.raises(ValidationError, match="CSS hex colour"):
        tenant(accent_color=color)


@pytest.mark.parametrize(
    "url", ["https://contoso.example/logo.png", "https://cdn.contoso.example:8443/a/b.svg?v=2", PNG]
)
def test_https_and_data_image_logos_are_accepted(url: str) -> None:
    assert tenant(logo_url=url).logo_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://contoso.example/logo.png",  # clear text: anyone on the path swaps the logo
        "javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",  # not an image
        "data:image/png,<svg onload=alert(1)>",  # not base64
        "https://contoso.example/logo.png; script-src *",  # would add a CSP directive
        "https://contoso.example/a.png https://evil.example",  # would add a CSP source
        "https://contoso.example/a,b.png",
        'https://contoso.example/"onerror=alert(1)',
        "https://contoso.example/'unsafe-inline'",
        "//contoso.example/logo.png",
        "https://" + "a" * 3000 + ".example/logo.png",
        "data:image/png;base64," + "A" * (64 * 1024),
    ],
)
def test_other_logo_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="logo"):
        tenant(logo_url=url)


def test_a_logo_is_allowed_by_its_exact_source_only() -> None:
    assert logo_source("https://cdn.contoso.example:8443/a/b.svg?v=2") == (
        "https://cdn.contoso.example:8443/a/b.svg?v=2",
        "https://cdn.contoso.example:8443/a/b.svg",
    )
    assert logo_source(PNG) == (PNG, "data:")
    # Defence in depth: a value that bypassed the config's checks never reaches the page or the CSP.
    assert logo_source("https://x.example/a.png; img-src *") == ("", "")
    assert logo_source(None) == ("", "")


def test_the_accent_keeps_text_readable() -> None:
    """Buttons take the colour with the more readable text on it; links take it only where readable."""
    dark = accent_css("#0b3d91")
    assert "--button:#0b3d91;--button-fg:#ffffff" in dark
    assert "(prefers-color-scheme: light){:root{--accent:#0b3d91" in dark
    assert "(prefers-color-scheme: dark)" not in dark  # navy links on the dark card would be unreadable
    light = accent_css("#ffd400")
    assert "--button-fg:#111111" in light and "(prefers-color-scheme: light)" not in light
    assert accent_css("#0b5cad; }") == "" and accent_css(None) == ""
    assert contrast((255, 255, 255), (0, 0, 0)) == pytest.approx(21.0)


async def _page(browser: aiohttp.ClientSession, url: str) -> tuple[str, str]:
    async with browser.get(url, allow_redirects=False) as resp:
        return await resp.text(), resp.headers["Content-Security-Policy"]


def _img_src(csp: str) -> list[str]:
    return [d.strip() for d in csp.split(";") if d.strip().startswith(("img-src", "default-src"))]


async def test_the_company_page_shows_its_colour_and_logo_and_allows_that_logo_only(tmp_path: Path) -> None:
    contoso = {"accent_color": "#7a1fa2", "logo_url": "https://cdn.contoso.example/brand/logo.svg?v=3"}
    async with running_stack("memory", tmp_path, {}, contoso=contoso) as stack:
        async with stack.browser() as browser:
            page, csp = await _page(browser, f"{stack.gateway_url}/.auth/login/contoso")
            assert "--button:#7a1fa2" in page
            assert 'src="https://cdn.contoso.example/brand/logo.svg?v=3"' in page
            assert _img_src(csp) == [
                "default-src 'none'",
                "img-src https://cdn.contoso.example/brand/logo.svg",
            ]
            # Every other page loads no image at all, and carries no company's colour.
            for path in ("/.auth/login", "/.auth/login/nobody", "/.auth/logout"):
                page, csp = await _page(browser, stack.gateway_url + path)
                assert _img_src(csp) == ["default-src 'none'"], path
                assert "#7a1fa2" not in page, path


async def test_a_data_logo_is_allowed_as_data_images_only(tmp_path: Path) -> None:
    async with running_stack("memory", tmp_path, {}, contoso={"logo_url": PNG}) as stack:
        async with stack.browser() as browser:
            page, csp = await _page(browser, f"{stack.gateway_url}/.auth/login/contoso")
            assert f'src="{PNG}"' in page
            assert _img_src(csp) == ["default-src 'none'", "img-src data:"]
            assert "--button:#" not in page  # no accent configured: the pages' own blue

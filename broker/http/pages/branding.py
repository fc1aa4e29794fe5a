"""A company's accent colour and logo on its pages: the CSS they add and the image source the CSP allows.

The config already refuses anything but a hex colour and an https or ``data:image`` URL; each is checked
again here, because these two values reach the page's stylesheet and its CSP, where escaping does not help.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from broker.config.formats import CSS_HEX_COLOR, LOGO_DATA_URL, LOGO_HTTPS_URL

# The pages' card colours (layout.html), against which a company's colour must stay readable as text.
LIGHT_CARD = (255, 255, 255)
DARK_CARD = (22, 27, 34)
# WCAG 2 contrast for large text and user-interface parts: below it, links keep the page's own blue.
MIN_TEXT_CONTRAST = 3.0


@dataclass(frozen=True)
class Branding:
    """What a company's page adds: CSS custom properties, and the one image source it may load."""

    css: str = ""
    logo_url: str = ""
    img_src: str = ""


def _rgb(color: str) -> tuple[int, int, int]:
    digits = color[1:]
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def _luminance(rgb: tuple[int, int, int]) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """The WCAG 2 contrast ratio of two colours (1 to 21)."""
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def accent_css(color: str | None) -> str:
    """Custom properties for ``color``: buttons in it with readable text; links in it where readable."""
    if color is None or not CSS_HEX_COLOR.match(color):
        return ""
    rgb = _rgb(color)
    on_accent = "#ffffff" if contrast(rgb, (255, 255, 255)) >= contrast(rgb, (17, 17, 17)) else "#111111"
    css = f":root{{--button:{color};--button-fg:{on_accent};}}"
    if contrast(rgb, LIGHT_CARD) >= MIN_TEXT_CONTRAST:
        css += f"@media (prefers-color-scheme: light){{:root{{--accent:{color};}}}}"
    if contrast(rgb, DARK_CARD) >= MIN_TEXT_CONTRAST:
        css += f"@media (prefers-color-scheme: dark){{:root{{--accent:{color};}}}}"
    return css


def logo_source(url: str | None) -> tuple[str, str]:
    """(the logo to show, the CSP img-src that allows it and nothing else); ("", "") for none or invalid."""
    if not url:
        return "", ""
    if LOGO_DATA_URL.match(url):
        return url, "data:"
    if LOGO_HTTPS_URL.match(url):
        parts = urlsplit(url)
        # A CSP source with a path matches that exact path (CSP3 §6.7.2.9); queries are not part of it.
        return url, f"https://{parts.netloc}{parts.path or '/'}"
    return "", ""


def branding(accent_color: str | None, logo_url: str | None) -> Branding:
    """A company's branding from its config values."""
    logo, img_src = logo_source(logo_url)
    return Branding(css=accent_css(accent_color), logo_url=logo, img_src=img_src)

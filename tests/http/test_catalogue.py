"""One catalogue holds every string the gateway's pages show, in every language shipped.

The message ids are collected from where they are written: ``t("...")`` in the templates, and the constant
titles, messages and link labels the handlers, the middleware, the proxy and Entra's explanations give to
the pages. Each must be in every language with the same ``{placeholders}``; no entry may be unused.
"""

from __future__ import annotations

import ast
import string
from pathlib import Path

import jinja2
import pytest
from jinja2 import nodes

import broker
from broker.http.pages import catalogue
from broker.http.pages.language import (
    MAX_ACCEPT_LANGUAGE,
    choose_page_language,
    forget_page_language,
    negotiate,
    page_language,
)

BROKER = Path(broker.__file__).parent
TEMPLATES = BROKER / "http" / "pages" / "templates"
# The calls whose string arguments become page text, and which of their positional arguments do.
PAGE_TEXT_ARGS = {"simple": (0, 1), "error_response": (2, 3), "Explanation": (0, 1, 2), "Failure": (1, 2)}
PAGE_TEXT_KEYWORDS = {"message", "link"}


def template_messages() -> set[str]:
    """Every constant ``t("...")`` of every template."""
    env = jinja2.Environment()
    found: set[str] = set()
    for path in TEMPLATES.glob("*.html"):
        for call in env.parse(path.read_text()).find_all(nodes.Call):
            if isinstance(call.node, nodes.Name) and call.node.name == "t":
                first = call.args[0]
                if isinstance(first, nodes.Const):
                    found.add(first.value)
    return found


def _constants(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple):  # link=(href, label): the label is page text, the href is not
        return _constants(node.elts[-1])
    return []


def python_messages() -> set[str]:
    """Every constant string the gateway's code passes to a page as title, message or link label."""
    found: set[str] = set()
    for path in BROKER.rglob("*.py"):
        for call in ast.walk(ast.parse(path.read_text())):
            if not isinstance(call, ast.Call):
                continue
            name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
            if name not in PAGE_TEXT_ARGS and name != "chooser":
                continue
            for index in PAGE_TEXT_ARGS.get(name, ()):
                if index < len(call.args):
                    found.update(_constants(call.args[index]))
            for keyword in call.keywords:
                if keyword.arg in PAGE_TEXT_KEYWORDS:
                    found.update(_constants(keyword.value))
    return found


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def test_the_collectors_find_the_pages_strings() -> None:
    """Guards the guard: if the collectors found nothing, the coverage tests below would pass vacuously."""
    assert {"Sign in with Microsoft", "Request ID:"} <= template_messages()
    assert {"Please sign in again", "Not found", "Sign-in failed", "Switch account"} <= python_messages()


@pytest.mark.parametrize("language", catalogue.LANGUAGES)
def test_every_message_the_pages_show_is_in_every_language(language: str) -> None:
    missing = sorted((template_messages() | python_messages()) - set(catalogue.CATALOGUE[language]))
    assert missing == [], f"not in the {language} catalogue: {missing}"


def test_every_catalogue_key_exists_in_every_language_with_the_same_placeholders() -> None:
    english = catalogue.CATALOGUE[catalogue.DEFAULT_LANGUAGE]
    for language in catalogue.LANGUAGES:
        messages = catalogue.CATALOGUE[language]
        assert set(messages) == set(english), language
        for key, text in messages.items():
            assert text.strip(), (language, key)
            assert placeholders(text) == placeholders(key), (language, key)


def test_no_catalogue_entry_is_unused() -> None:
    unused = set(catalogue.CATALOGUE[catalogue.DEFAULT_LANGUAGE]) - template_messages() - python_messages()
    assert unused == set()


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("", "en"),
        ("fr", "fr"),
        ("fr-CA,fr;q=0.9,en;q=0.8", "fr"),
        ("de-DE,de;q=0.9,en;q=0.8,fr;q=0.7", "en"),
        ("en;q=0.1, FR;q=0.9", "fr"),
        ("fr;q=0, en", "en"),
        ("fr;q=abc", "en"),
        ("fr;q=7", "en"),
        ("*", "en"),
        ("de, fr;q=0.5", "fr"),
        ("en, fr", "en"),
        (",,;;==", "en"),
        # Bounded: a language listed only past the first 512 characters is never read.
        ("x-" + "a" * MAX_ACCEPT_LANGUAGE + ",fr", "en"),
        (",".join(["de"] * 40 + ["fr"]), "en"),
    ],
)
def test_accept_language_picks_the_preferred_shipped_language(header: str, language: str) -> None:
    assert negotiate(header) == language
    # The request stages' way, which remembers answers by header value: the same language, asked twice.
    for _ in range(2):
        token = choose_page_language(header)
        try:
            assert page_language() == language
        finally:
            forget_page_language(token)

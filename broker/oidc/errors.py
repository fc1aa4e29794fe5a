"""AADSTS and OAuth error codes -> plain words for the user and a fix for the admin (ENTRA.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Everything here reads attacker-controlled text (the callback's ``error_description``): the text is cut
# to MAX_DESCRIPTION before any regex runs, and only AADSTS numbers of at most MAX_CODE_DIGITS digits count
# (Entra's codes have 5-7 digits; ``int()`` over thousands of digits raises or burns CPU).
MAX_DESCRIPTION = 1024
MAX_ERROR = 64
MAX_CODE_DIGITS = 9
_AADSTS = re.compile(r"AADSTS(\d{1,9})(?!\d)")  # at most MAX_CODE_DIGITS digits
_CORRELATION = re.compile(r"Correlation ID:\s*([0-9a-fA-F-]{36})")
OTHER_LABEL = "other"


@dataclass(frozen=True)
class Explanation:
    """What to tell the person signing in, and what the company's admin should do."""

    title: str
    user: str
    admin: str


_CATALOGUE: dict[int, Explanation] = {
    50011: Explanation(
        "Sign-in is not set up correctly",
        "Your company's Microsoft sign-in does not know this address yet.",
        "Register this gateway's redirect URI on the app registration "
        "(Authentication > Web > Redirect URIs).",
    ),
    700016: Explanation(
        "Sign-in is not set up correctly",
        "Your company's directory does not know this application.",
        "Check the application (client) ID and tenant ID. A new app registration can take a few minutes "
        "to propagate.",
    ),
    65001: Explanation(
        "Permission needed",
        "This application needs permission that has not been granted yet.",
        "Grant admin consent for the app's API permissions (openid, profile, email, offline_access).",
    ),
    65004: Explanation(
        "Consent declined",
        "Sign-in was cancelled because consent was declined.",
        "Grant admin consent for the app if users cannot consent themselves.",
    ),
    90094: Explanation(
        "Administrator approval needed",
        "An administrator must approve this application before you can use it.",
        "Grant admin consent for the app in Enterprise applications > Permissions.",
    ),
    50105: Explanation(
        "You don't have access yet",
        "Your account is not assigned to this application. Ask your administrator to assign you a role.",
        "Assign the user (or a group they belong to) to the enterprise application, or turn off "
        "'Assignment required'.",
    ),
    7000215: Explanation(
        "Sign-in is not set up correctly",
        "The gateway could not prove its identity to Microsoft.",
        "The client secret is invalid: configure the secret's *value* (not its ID), or rotate it.",
    ),
    7000222: Explanation(
        "Sign-in is not set up correctly",
        "The gateway's credentials with Microsoft have expired.",
        "The client secret has expired: create a new one and update the gateway configuration.",
    ),
    700027: Explanation(
        "Sign-in is not set up correctly",
        "The gateway could not prove its identity to Microsoft.",
        "The certificate assertion was rejected: check the uploaded certificate and its thumbprint.",
    ),
    50076: Explanation(
        "Extra verification needed",
        "Your organisation requires multi-factor authentication. Sign in again and complete it.",
        "Conditional Access requires MFA for this app.",
    ),
    53003: Explanation(
        "Access blocked by your organisation",
        "Your organisation's security policy blocked this sign-in.",
        "A Conditional Access policy blocked the sign-in; see the sign-in logs for the correlation ID.",
    ),
    50020: Explanation(
        "Wrong account for this company",
        "The account you chose does not belong to this company. Sign in with your account at this company.",
        "The user is from another tenant; use that company's own login page or invite them as a guest.",
    ),
    90072: Explanation(
        "Wrong account for this company",
        "The account you chose does not belong to this company. Sign in with your account at this company.",
        "The user is from another tenant; use that company's own login page or invite them as a guest.",
    ),
    54005: Explanation(
        "Please sign in again",
        "This sign-in link was already used. Start again.",
        "The authorization code was redeemed twice (often a double submit or a replay).",
    ),
    501481: Explanation(
        "Please sign in again",
        "The sign-in could not be completed. Start again.",
        "PKCE verifier mismatch: the sign-in was started by another request.",
    ),
}

_BY_ERROR: dict[str, Explanation] = {
    "access_denied": Explanation(
        "Sign-in cancelled",
        "The sign-in was cancelled or access was denied.",
        "The user cancelled, or consent was declined.",
    ),
}

_FALLBACK = Explanation(
    "Sign-in failed",
    "Microsoft could not sign you in. Try again; if it keeps happening, contact your administrator.",
    "See the error code and correlation ID in the Entra sign-in logs.",
)


def bounded_description(description: str) -> str:
    """An ``error_description`` cut to what the gateway ever reads or shows (before any parsing)."""
    return description[:MAX_DESCRIPTION]


def bounded_error(error: str) -> str:
    """An OAuth ``error`` name cut to a sane length (the real ones are short ASCII tokens)."""
    return error[:MAX_ERROR]


def aadsts_code(description: str, error_codes: tuple[int, ...] = ()) -> int | None:
    """The AADSTS number of an error, from ``error_codes`` or the description text (bounded digit runs)."""
    codes = [c for c in error_codes if 0 < c < 10**MAX_CODE_DIGITS]
    if codes:
        return codes[0]
    match = _AADSTS.search(bounded_description(description))
    return int(match.group(1)) if match else None


def metric_label(code: int | None) -> str:
    """The ``aadsts`` metric label: a code the gateway explains, ``other`` for any other, '' for none.

    Labels come from this closed set so that nobody can create metric series by sending made-up codes."""
    if code is None:
        return ""
    return str(code) if code in _CATALOGUE else OTHER_LABEL


def correlation_id(description: str) -> str:
    """The correlation ID embedded in an ``error_description``, or ''."""
    match = _CORRELATION.search(bounded_description(description))
    return match.group(1) if match else ""


def explain(error: str, code: int | None) -> Explanation:
    """The explanation for an AADSTS code, else for the OAuth error name, else a generic one."""
    if code is not None and code in _CATALOGUE:
        return _CATALOGUE[code]
    return _BY_ERROR.get(error, _FALLBACK)


def explained_codes() -> tuple[int, ...]:
    """Every AADSTS code the gateway explains, in order (the setup guide's troubleshooting lists them)."""
    return tuple(sorted(_CATALOGUE))

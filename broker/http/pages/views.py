"""The individual pages: each builds its template's context from data; ``render`` escapes and lays out."""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from aiohttp import web

from broker.config.schema import TenantConfig
from broker.http.pages.branding import branding
from broker.http.pages.render import page
from broker.oidc.errors import Explanation

# Entra's error_description is attacker-controlled text: show the admin no more than this much of it.
MAX_SHOWN_DESCRIPTION = 600


def company_login(tenant: TenantConfig, start_url: str, request_id: str) -> web.Response:
    """The company's own sign-in page: name, logo, note to users and one button, in its accent colour."""
    brand = branding(tenant.accent_color, tenant.logo_url)
    context = {
        "display_name": tenant.display_name,
        "logo_url": brand.logo_url,
        "note": tenant.note,
        "start_url": start_url,
    }
    return page("company_login.html", context, request_id=request_id, branding=brand)


def unknown_company(code: str, listed: list[tuple[str, str]], request_id: str) -> web.Response:
    """A login code that does not exist; lists only companies marked ``listed``."""
    return page("unknown_company.html", {"code": code, "listed": listed}, status=404, request_id=request_id)


def chooser(
    rd: str, listed: list[tuple[str, str]], request_id: str, message: str = "", who: str = ""
) -> web.Response:
    """Where a user types their company login code or work email (home-realm discovery).

    ``who`` is what the user typed last time, shown again (escaped) so a typo is fixed, not retyped.
    """
    context = {"rd": rd, "listed": listed, "message": message, "who": who}
    return page("chooser.html", context, status=404 if message else 200, request_id=request_id)


def login_error(
    explanation: Explanation,
    *,
    code: int | None,
    error: str,
    description: str,
    correlation_id: str,
    retry_url: str,
    request_id: str,
    status: int = 400,
) -> web.Response:
    """An explained sign-in failure: plain words for the user, details for the admin, a retry link."""
    context = {
        "title": explanation.title,
        "user_text": explanation.user,
        "admin_text": explanation.admin,
        "code": code,
        "error": error,
        "description": description[:MAX_SHOWN_DESCRIPTION],
        "correlation_id": correlation_id,
        "retry_url": retry_url,
    }
    return page("login_error.html", context, status=status, request_id=request_id)


def simple(
    title: str, message: str, status: int, request_id: str, link: tuple[str, str] | None = None
) -> web.Response:
    """A short message page (errors, 403, 404, 502, 503, 504)."""
    href, label = link if link is not None else ("", "")
    context = {"title": title, "message": message, "link_href": href, "link_label": label}
    return page("simple.html", context, status=status, request_id=request_id)


def logout_confirm(csrf_token: str, who: str, request_id: str) -> web.Response:
    """GET /.auth/logout: a confirm button, so a cross-site link or image cannot sign anyone out."""
    return page("logout_confirm.html", {"who": who, "csrf_token": csrf_token}, request_id=request_id)


def signed_out(entra_logout_url: str | None, login_url: str, request_id: str) -> web.Response:
    """After logout: offer to sign out of Microsoft too (other apps keep their Microsoft session)."""
    context = {"entra_logout_url": entra_logout_url or "", "login_url": login_url}
    return page("signed_out.html", context, request_id=request_id)


BOUNCE_FIELDS = ("code", "state", "error", "error_description", "error_uri", "session_state")


def callback_bounce(params: Mapping[str, str], request_id: str) -> web.Response:
    """Re-post Entra's form_post to the callback from the gateway's own origin.

    Entra's form_post is a cross-site POST, so the browser withholds SameSite=Lax cookies, including the
    login-binding cookie. The same fields posted again by this page are a same-site request that carries
    it. A nonce-scripted auto-submit, with a button for browsers without JavaScript.
    """
    nonce = secrets.token_urlsafe(16)
    fields = [(name, params[name]) for name in BOUNCE_FIELDS if name in params]
    response = page("callback_bounce.html", {"fields": fields, "nonce": nonce}, request_id=request_id)
    # A fresh nonce per response: the page's one inline script runs, nothing injected beside it could.
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return response

"""The individual pages: each a function from data to a response, all escaping through ``render``."""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from aiohttp import web

from broker.config.schema import TenantConfig
from broker.oidc.errors import Explanation
from broker.pages.render import Markup, fill, page

_MS_MARK = Markup('<span class="ms" aria-hidden="true"><i></i><i></i><i></i><i></i></span>')


def company_login(tenant: TenantConfig, start_url: str, request_id: str) -> web.Response:
    """The company's own sign-in page: name, logo, note to users and one button."""
    logo = (
        fill('<img class="logo" src="$src" alt="$alt">', src=tenant.logo_url, alt=tenant.display_name)
        if (tenant.logo_url)
        else Markup("")
    )
    note = fill('<p class="note">$note</p>', note=tenant.note) if tenant.note else Markup("")
    body = Markup(
        logo
        + fill("<h1>Sign in to $name</h1>", name=tenant.display_name)
        + note
        + fill('<a class="button" href="$url">', url=start_url)
        + _MS_MARK
        + Markup(" Sign in with Microsoft</a>")
        + Markup('<p class="muted">You will be sent to Microsoft to sign in with your work account.</p>')
    )
    return page(f"Sign in – {tenant.display_name}", body, request_id=request_id)


def unknown_company(code: str, listed: list[tuple[str, str]], request_id: str) -> web.Response:
    """A login code that does not exist; lists only companies marked ``listed``."""
    body = fill(
        "<h1>Company not found</h1><p>There is no company with the login code <code>$code</code>. "
        "Check the link your administrator gave you.</p>",
        code=code,
    )
    body = Markup(
        body
        + _listed_companies(listed)
        + Markup('<a class="button secondary" href="/.auth/login">Find your company</a>')
    )
    return page("Company not found", body, status=404, request_id=request_id)


def _listed_companies(listed: list[tuple[str, str]]) -> Markup:
    if not listed:
        return Markup("")
    items = Markup("").join(
        fill('<li><a href="/.auth/login/$code">$name</a></li>', code=code, name=name) for code, name in listed
    )
    return Markup(Markup("<p>Companies:</p><ul>") + items + Markup("</ul>"))


def chooser(rd: str, listed: list[tuple[str, str]], request_id: str, message: str = "") -> web.Response:
    """Where a user types their company login code or work email (home-realm discovery)."""
    error = fill('<p class="error" role="alert">$m</p>', m=message) if message else Markup("")
    body = Markup(
        Markup("<h1>Sign in</h1>")
        + error
        + fill(
            '<form method="post" action="/.auth/login"><input type="hidden" name="rd" value="$rd">'
            '<label for="who">Company login code or work email</label>'
            '<input type="text" id="who" name="who" autocomplete="username" required autofocus>'
            '<button class="button" type="submit">Continue</button></form>',
            rd=rd,
        )
        + _listed_companies(listed)
    )
    return page("Sign in", body, status=404 if message else 200, request_id=request_id)


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
    admin_lines = fill(
        "<p>$admin</p><p>Error: <code>$error</code>$code_part</p>",
        admin=explanation.admin,
        error=error,
        code_part=Markup(fill(" (AADSTS$c)", c=code) if code is not None else ""),
    )
    if correlation_id:
        admin_lines = Markup(admin_lines + fill("<p>Correlation ID: <code>$c</code></p>", c=correlation_id))
    if description:
        admin_lines = Markup(admin_lines + fill('<p class="muted"><code>$d</code></p>', d=description[:600]))
    body = Markup(
        fill("<h1>$title</h1><p>$user</p>", title=explanation.title, user=explanation.user)
        + fill('<a class="button" href="$url">Try again</a>', url=retry_url)
        + Markup("<details><summary>Details for your administrator</summary>")
        + admin_lines
        + Markup("</details>")
    )
    return page(explanation.title, body, status=status, request_id=request_id)


def simple(
    title: str, message: str, status: int, request_id: str, link: tuple[str, str] | None = None
) -> web.Response:
    """A short message page (errors, 403, 404, 502, 503, 504)."""
    body = fill("<h1>$title</h1><p>$message</p>", title=title, message=message)
    if link is not None:
        body = Markup(
            body + fill('<a class="button secondary" href="$href">$label</a>', href=link[0], label=link[1])
        )
    return page(title, body, status=status, request_id=request_id)


def logout_confirm(csrf_token: str, who: str, request_id: str) -> web.Response:
    """GET /.auth/logout: a confirm button, so a cross-site link or image cannot sign anyone out."""
    body = fill(
        "<h1>Sign out?</h1><p>You are signed in as <strong>$who</strong>.</p>"
        '<form method="post" action="/.auth/logout"><input type="hidden" name="csrf" value="$csrf">'
        '<button class="button" type="submit">Sign out</button></form>',
        who=who,
        csrf=csrf_token,
    )
    return page("Sign out", body, request_id=request_id)


def signed_out(entra_logout_url: str | None, login_url: str, request_id: str) -> web.Response:
    """After logout: offer to sign out of Microsoft too (other apps keep their Microsoft session)."""
    body = Markup(
        Markup("<h1>You are signed out</h1><p>You are signed out of this application.</p>")
        + (
            fill(
                '<a class="button" href="$url">Also sign out of your Microsoft account</a>',
                url=entra_logout_url,
            )
            if entra_logout_url
            else Markup("")
        )
        + fill('<a class="button secondary" href="$url">Sign in again</a>', url=login_url)
    )
    return page("Signed out", body, request_id=request_id)


BOUNCE_FIELDS = ("code", "state", "error", "error_description", "error_uri", "session_state")


def callback_bounce(params: Mapping[str, str], request_id: str) -> web.Response:
    """Re-post Entra's form_post to the callback from the gateway's own origin.

    Entra's form_post is a cross-site POST, so the browser withholds SameSite=Lax cookies, including the
    login-binding cookie. The same fields posted again by this page are a same-site request that carries
    it. A nonce-scripted auto-submit, with a button for browsers without JavaScript.
    """
    nonce = secrets.token_urlsafe(16)
    hidden = Markup("").join(
        fill('<input type="hidden" name="$name" value="$value">', name=name, value=params[name])
        for name in BOUNCE_FIELDS
        if name in params
    )
    body = Markup(
        Markup('<h1>Signing you in…</h1><form id="continue" method="post" action="/.auth/callback">')
        + hidden
        + Markup('<input type="hidden" name="bounced" value="1">')
        + Markup('<noscript><button class="button" type="submit">Continue</button></noscript></form>')
        + fill('<script nonce="$nonce">document.getElementById("continue").submit()</script>', nonce=nonce)
    )
    response = page("Signing you in", body, request_id=request_id)
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return response

"""The dev IdP's HTML: sign-in, error, form_post and signed-out pages (inline CSS, no external assets)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from devidp.errors import AadstsError, ErrorContext
from devidp.model import DevTenant, DevUser

# Field names the sign-in forms post, besides the authorize request's own parameters.
USERNAME_FIELD = "username"
CANCEL_FIELD = "cancel"

_CSS = """
:root { color-scheme: light; --accent: #0067b8; --text: #1b1b1b; --muted: #5e5e5e; --line: #d6d6d6; }
* { box-sizing: border-box; }
body { margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
  font: 15px/1.45 "Segoe UI", system-ui, -apple-system, sans-serif; color: var(--text); background: #f2f2f2; }
main { width: min(440px, 100%); background: #fff; padding: 44px; box-shadow: 0 2px 6px rgba(0,0,0,.2); }
.brand { font-size: 13px; color: var(--muted); margin: 0 0 16px; letter-spacing: .02em; }
h1 { font-size: 24px; font-weight: 600; margin: 0 0 4px; }
h2 { font-size: 15px; font-weight: 600; margin: 28px 0 8px; color: var(--muted); }
p { margin: 8px 0; }
.app { color: var(--muted); margin-bottom: 20px; }
ul { list-style: none; margin: 0; padding: 0; }
li + li { margin-top: 6px; }
form { margin: 0; }
button.account { width: 100%; display: flex; flex-direction: column; align-items: flex-start; gap: 2px;
  padding: 10px 12px; font: inherit; text-align: left; background: #fff; color: var(--text);
  border: 1px solid var(--line); cursor: pointer; }
button.account:hover { background: #f5f5f5; }
button:focus-visible, a:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.username { font-size: 13px; color: var(--muted); }
.note { font-size: 12px; color: #a4262c; }
.tenant { font-size: 13px; color: var(--muted); margin: 12px 0 4px; }
button.secondary { margin-top: 24px; padding: 6px 16px; font: inherit; background: #e6e6e6; border: 0;
  cursor: pointer; }
.code { font-weight: 600; }
.details { margin-top: 24px; font-size: 12px; color: var(--muted); word-break: break-all; }
.details dt { font-weight: 600; }
.details dd { margin: 0 0 6px; }
.users li { padding: 6px 0; border-top: 1px solid var(--line); }
.users .name { font-weight: 600; }
a { color: var(--accent); }
"""


def _layout(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        '<p class="brand">Development identity provider (Entra-shaped)</p>\n'
        f"{body}\n</main>\n</body>\n</html>\n"
    )


def _attr(value: str) -> str:
    # HTML parsers fold CR LF to LF; character references survive, keeping error_description's "\r\n".
    return escape(value).replace("\r", "&#13;").replace("\n", "&#10;")


def _hidden(fields: Iterable[tuple[str, str]]) -> str:
    return "".join(f'<input type="hidden" name="{_attr(k)}" value="{_attr(v)}">' for k, v in fields)


def _test_note(user: DevUser) -> str:
    """Say which accounts are set up to fail, so a demo visitor is not surprised by the refusal."""
    notes = []
    if user.token_fault:
        notes.append(f"broken ID token ({user.token_fault})")
    if user.authorize_error:
        notes.append(f"refused with AADSTS{user.authorize_error}")
    if user.has_group_overage:
        notes.append("group overage")
    return f'<span class="note">Test account: {escape(", ".join(notes))}</span>' if notes else ""


def _account_button(action: str, params: Sequence[tuple[str, str]], user: DevUser) -> str:
    # One form per account keeps each choice a plain POST that works without JavaScript.
    return (
        f'<li><form method="post" action="{escape(action)}">{_hidden(params)}'
        f"{_hidden([(USERNAME_FIELD, user.username)])}"
        f'<button type="submit" class="account"><span class="name">{escape(user.name)}</span>'
        f'<span class="username">{escape(user.username)}</span>{_test_note(user)}</button></form></li>'
    )


def sign_in_page(
    *,
    tenant: DevTenant,
    app_name: str,
    action: str,
    params: Sequence[tuple[str, str]],
    other_tenants: Sequence[DevTenant],
) -> str:
    """Pick an account: the tenant's own users first, then everyone else under "Use another account"."""
    own = "".join(_account_button(action, params, u) for u in tenant.users)
    others = "".join(
        f'<p class="tenant">{escape(t.display_name)}</p><ul>'
        + "".join(_account_button(action, params, u) for u in t.users)
        + "</ul>"
        for t in other_tenants
        if t.users
    )
    body = (
        f"<h1>{escape(tenant.display_name)}</h1>\n"
        f'<p class="app">Pick an account to continue to {escape(app_name)}</p>\n'
        f'<section aria-labelledby="own"><h2 id="own">Accounts in {escape(tenant.display_name)}</h2>'
        f"<ul>{own}</ul></section>\n"
    )
    if others:
        body += (
            f'<section aria-labelledby="other"><h2 id="other">Use another account</h2>{others}</section>\n'
        )
    body += (
        f'<form method="post" action="{escape(action)}">{_hidden(params)}{_hidden([(CANCEL_FIELD, "1")])}'
        '<button type="submit" class="secondary">Cancel</button></form>'
    )
    return _layout(f"Sign in to {tenant.display_name}", body)


def multi_tenant_sign_in_page(
    *, app_name: str, action: str, params: Sequence[tuple[str, str]], tenants: Sequence[DevTenant]
) -> str:
    """Pick an account at ``/organizations`` or ``/common``: every directory's users, each under its name."""
    sections = "".join(
        f'<p class="tenant">{escape(t.display_name)}</p><ul>'
        + "".join(_account_button(action, params, u) for u in t.users)
        + "</ul>"
        for t in tenants
        if t.users
    )
    body = (
        "<h1>Sign in</h1>\n"
        f'<p class="app">Pick a work account to continue to {escape(app_name)}</p>\n'
        f'<section aria-labelledby="accounts"><h2 id="accounts">Work accounts</h2>{sections}</section>\n'
        f'<form method="post" action="{escape(action)}">{_hidden(params)}{_hidden([(CANCEL_FIELD, "1")])}'
        '<button type="submit" class="secondary">Cancel</button></form>'
    )
    return _layout("Sign in to your account", body)


def error_page(err: AadstsError, ctx: ErrorContext) -> str:
    """Entra's "we couldn't sign you in" page, for errors that cannot go back to the app."""
    body = (
        "<h1>Sign in</h1>\n<p>Sorry, but we're having trouble signing you in.</p>\n"
        f'<p role="alert"><span class="code">AADSTS{err.code}:</span> {escape(err.message)}</p>\n'
        '<dl class="details">'
        f"<dt>Request Id</dt><dd>{escape(ctx.trace_id)}</dd>"
        f"<dt>Correlation Id</dt><dd>{escape(ctx.correlation_id)}</dd>"
        f"<dt>Timestamp</dt><dd>{escape(ctx.timestamp)}</dd>"
        "</dl>"
    )
    return _layout("Sign in to your account", body)


def form_post_page(action: str, fields: dict[str, str]) -> str:
    """``response_mode=form_post``: a form that submits itself to the app's redirect URI."""
    body = (
        "<h1>Signing you in…</h1>\n"
        f'<form method="post" action="{escape(action)}">{_hidden(fields.items())}'
        "<noscript><p>JavaScript is off: continue manually.</p>"
        '<button type="submit" class="secondary">Continue</button></noscript></form>\n'
        "<script>document.forms[0].submit();</script>"
    )
    return _layout("Working...", body)


def signed_out_page() -> str:
    """What Entra shows after logout when there is no registered place to send the user back to."""
    body = "<h1>You signed out of your account</h1>\n<p>It's a good idea to close all browser windows.</p>"
    return _layout("Sign out", body)


def error_lookup_page(code: str) -> str:
    """The target of every ``error_uri``: names the code and where Microsoft documents it."""
    body = (
        f"<h1>Error AADSTS{escape(code)}</h1>\n"
        "<p>Look this code up in Microsoft's reference: "
        '<a href="https://learn.microsoft.com/entra/identity-platform/reference-error-codes">'
        "Microsoft Entra authentication and authorization error codes</a>.</p>"
    )
    return _layout(f"AADSTS{code}", body)


def _tenant_summary(public_url: str, tenant: DevTenant) -> str:
    """One tenant: its name, GUID, discovery document, domains and users (never its client secrets)."""
    discovery = f"{public_url}/{tenant.tenant_id}/v2.0/.well-known/openid-configuration"
    users = "".join(
        f'<li><span class="name">{escape(u.name)}</span> <span class="username">{escape(u.username)}</span>'
        f"{' ' + _test_note(u) if _test_note(u) else ''}</li>"
        for u in tenant.users
    )
    return (
        f'<section><h2>{escape(tenant.display_name)}</h2><dl class="details">'
        f"<dt>Tenant ID</dt><dd><code>{escape(tenant.tenant_id)}</code></dd>"
        f"<dt>Domains</dt><dd>{escape(', '.join(tenant.domains)) or '–'}</dd>"
        f'<dt>Discovery</dt><dd><a href="{escape(discovery)}">{escape(discovery)}</a></dd></dl>'
        f'<ul class="users">{users}</ul></section>'
    )


def index_page(public_url: str, tenants: Sequence[DevTenant]) -> str:
    """The dev IdP's root (printed by the README and the demo banner): what it serves and who can sign in."""
    body = (
        "<h1>Dev IdP</h1>\n"
        "<p>An Entra-shaped identity provider for development and tests. Its tenants and the accounts "
        "you can sign in with:</p>\n" + "".join(_tenant_summary(public_url, t) for t in tenants)
    )
    return _layout("Dev IdP", body)

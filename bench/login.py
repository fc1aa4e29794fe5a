"""A real login through the dev IdP, for the wrk benchmarks; prints the session cookie as ``name=value``.

Gateway mode (default): the company page -> "Sign in with Microsoft" (start) -> the dev IdP's sign-in
form -> the form_post back to the gateway's callback -> the gateway's session cookie (``broker``).

``--mod-auth-openidc`` mode: GET a protected URL of Apache + mod_auth_openidc, follow its redirects to the
dev IdP, pick the user on the sign-in form, then follow redirects and auto-submitted form_post pages back
to the ``OIDCRedirectURI`` until mod_auth_openidc sets ``mod_auth_openidc_session``.

    .venv/bin/python bench/login.py --gateway http://localhost:8080 [--code contoso] [--user adele@...]
    .venv/bin/python bench/login.py --mod-auth-openidc --url http://localhost:8081/ [--user adele@...]

Exits non-zero with a description of the step that failed (status, URL and the start of the body).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from html import unescape
from html.parser import HTMLParser
from urllib.parse import urljoin

import aiohttp


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), a.get("method", "get").lower(), {}))
        elif tag in ("input", "button") and self.forms and "name" in a:
            self.forms[-1][2].setdefault(a["name"], a.get("value", ""))


def forms(html: str) -> list[tuple[str, str, dict[str, str]]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


_FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S | re.I)
_FIELD = re.compile(r"<(?:input|button)\b([^>]*)>", re.I)
_ATTR = re.compile(r'([A-Za-z_:][-\w:.]*)\s*=\s*"([^"]*)"')


def _attrs(text: str) -> dict[str, str]:
    return {k.lower(): unescape(v) for k, v in _ATTR.findall(text)}


def forms_fast(html: str) -> list[tuple[str, str, dict[str, str]]]:
    """``forms`` for pages whose attributes are double-quoted and whose forms do not nest (the dev IdP's
    and the gateway's): regular expressions instead of ``HTMLParser``, for the login-rate load client."""
    found: list[tuple[str, str, dict[str, str]]] = []
    for head, inner in _FORM.findall(html):
        a = _attrs(head)
        fields: dict[str, str] = {}
        for tag in _FIELD.findall(inner):
            f = _attrs(tag)
            if "name" in f:
                fields.setdefault(f["name"], f.get("value", ""))
        found.append((a.get("action", ""), a.get("method", "get").lower(), fields))
    return found


class LoginFailed(Exception):
    pass


async def _fail(step: str, resp: aiohttp.ClientResponse) -> LoginFailed:
    body = (await resp.text(errors="replace"))[:600]
    return LoginFailed(f"{step}: HTTP {resp.status} at {resp.url}\n{body}")


def _jar() -> aiohttp.CookieJar:
    # unsafe=True: also keep cookies set by IP-address hosts (127.0.0.1).
    return aiohttp.CookieJar(unsafe=True)


async def gateway_login(gateway: str, code: str, username: str) -> str:
    async with aiohttp.ClientSession(headers={"Accept": "text/html"}, cookie_jar=_jar()) as b:
        async with b.get(f"{gateway}/.auth/login/{code}") as r:
            start = re.search(r'href="([^"]*/start[^"]*)"', await r.text())
            if not start:
                raise await _fail("company page has no start link", r)
        async with b.get(urljoin(gateway, start.group(1)), allow_redirects=False) as r:
            if "Location" not in r.headers:
                raise await _fail("start did not redirect to the IdP", r)
            authorize = r.headers["Location"]
        async with b.get(authorize) as r:
            picked = [f for f in forms(await r.text()) if f[2].get("username") == username]
            if not picked:
                raise await _fail(f"IdP sign-in page has no form for {username}", r)
            action, _, fields = picked[0]
        async with b.post(urljoin(authorize, action), data=fields, allow_redirects=False) as r:
            found = forms(await r.text())
            if not found:
                raise await _fail("IdP did not answer with a form_post page", r)
            callback, _, cb_fields = found[0]
        async with b.post(callback, data=cb_fields, allow_redirects=False) as r:
            if r.status not in (302, 303):
                raise await _fail("callback did not redirect", r)
        for c in b.cookie_jar:
            if c.key.endswith("broker"):
                return f"{c.key}={c.value}"
        raise LoginFailed("callback set no broker session cookie")


async def mod_auth_openidc_login(url: str, username: str, max_steps: int = 12) -> str:
    """Follow mod_auth_openidc's flow by hand so every hop can be reported when something fails."""
    async with aiohttp.ClientSession(headers={"Accept": "text/html"}, cookie_jar=_jar()) as b:
        method, target, data = "GET", url, None
        picked_user = False
        trace: list[str] = []
        for _ in range(max_steps):
            async with b.request(method, target, data=data, allow_redirects=False) as r:
                trace.append(f"{method} {target} -> {r.status}")
                for c in b.cookie_jar:
                    if c.key == "mod_auth_openidc_session":
                        return f"{c.key}={c.value}"
                if r.status in (301, 302, 303, 307):
                    method, target, data = "GET", urljoin(str(r.url), r.headers["Location"]), None
                    continue
                page = await r.text(errors="replace")
                found = forms(page)
                if r.status == 200 and not picked_user:
                    users = [f for f in found if f[2].get("username") == username]
                    if users:
                        action, m, fields = users[0]
                        method, target, data = m.upper(), urljoin(str(r.url), action), fields
                        picked_user = True
                        continue
                if r.status == 200 and found and picked_user:
                    # The IdP's auto-submitted form_post page back to OIDCRedirectURI.
                    action, m, fields = found[0]
                    method, target, data = (m or "post").upper(), urljoin(str(r.url), action), fields
                    continue
                raise LoginFailed(
                    "mod_auth_openidc login stopped:\n  "
                    + "\n  ".join(trace)
                    + f"\n--- last response body ---\n{page[:1500]}"
                )
        raise LoginFailed("too many steps:\n  " + "\n  ".join(trace))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gateway", default="http://localhost:8080")
    parser.add_argument("--code", default="contoso")
    parser.add_argument("--user", default="adele@contoso.example")
    parser.add_argument("--mod-auth-openidc", action="store_true")
    parser.add_argument("--url", help="protected URL behind mod_auth_openidc")
    args = parser.parse_args()
    try:
        if args.mod_auth_openidc:
            if not args.url:
                parser.error("--mod-auth-openidc needs --url")
            cookie = asyncio.run(mod_auth_openidc_login(args.url, args.user))
        else:
            cookie = asyncio.run(gateway_login(args.gateway, args.code, args.user))
    except (LoginFailed, aiohttp.ClientError, KeyError) as exc:
        print(
            f"login failed: {exc!r}" if not isinstance(exc, LoginFailed) else f"login failed: {exc}",
            file=sys.stderr,
        )
        return 1
    print(cookie)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Company login pages, the company chooser, and the start of a sign-in.

``/.auth/login/{code}`` shows the company's page; its button leads to ``/.auth/login/{code}/start``, which
stores state, nonce and PKCE verifier server-side (single use, 10 minutes) and sends the browser to the
tenant's authorize endpoint. The chooser never reveals which login codes exist unless marked ``listed``.
"""

from __future__ import annotations

import hashlib
import logging
import secrets

from aiohttp import web

from broker.gateway import Gateway, gateway_of
from broker.http import paths
from broker.http.pages import views
from broker.http.redirects import safe_return_to
from broker.http.responses import error_response, request_id_of
from broker.identity.login_rate import client_key
from broker.oidc.client import PkcePair, authorize_url, new_nonce
from broker.oidc.verifier import source_of
from broker.sessions.model import LoginState

log = logging.getLogger(__name__)

# Query parameters a login link may pass through to Entra, and the values each may take.
PASSTHROUGH_PROMPTS = frozenset({"login", "select_account", "consent", "none"})
MAX_LOGIN_HINT = 256


def login_path(code: str, rd: str) -> str:
    """The company login page URL, keeping the return path."""
    return paths.with_return_to(paths.company_login(code), rd)


# Login codes are lower-case in the config (``config/validate.LOGIN_CODE``, at most 64 characters); users
# type them as they see them ("Contoso"), so paths match them case-insensitively. A longer value is no code:
# it is not lower-cased (bounded before use) and finds no company.
MAX_LOGIN_CODE = 64


def canonical_code(raw: str) -> str:
    """The config's spelling of a login code from a path: lower-case, or unchanged when too long to be one."""
    return raw.lower() if len(raw) <= MAX_LOGIN_CODE else raw


def _unknown(request: web.Request, gw: Gateway, code: str) -> web.Response:
    """The "company not found" page; it names no company that is not ``listed``."""
    return views.unknown_company(code, gw.listed_companies(), request_id_of(request))


def _return_to(request: web.Request, gw: Gateway) -> str:
    return safe_return_to(request.query.get("rd"), gw.return_targets.allows)


async def company_page(request: web.Request) -> web.StreamResponse:
    """GET /.auth/login/{code}."""
    return await render_company_page(request, gateway_of(request), request.match_info["code"])


def alias_code(aliases: list[str], path: str) -> str | None:
    """The login code in an operator alias path (``/login/{code}`` matches ``/login/contoso``)."""
    for alias in aliases:
        prefix, _, suffix = alias.partition("{code}")
        if path.startswith(prefix) and path.endswith(suffix) and len(path) > len(prefix) + len(suffix):
            code = path[len(prefix) : len(path) - len(suffix)]
            if "/" not in code:
                return code
    return None


async def render_company_page(request: web.Request, gw: Gateway, code: str) -> web.StreamResponse:
    """The company's page (also behind operator aliases such as /login/{code})."""
    code = canonical_code(code)
    tenant = gw.tenant(code)
    if tenant is None:
        return _unknown(request, gw, code)
    rd = _return_to(request, gw)
    start = paths.with_return_to(paths.company_login_start(code), rd)
    if tenant.auto_redirect or request.query.get("auto") == "1":
        raise web.HTTPFound(start)
    return views.company_login(tenant, start, request_id_of(request))


async def start(request: web.Request) -> web.StreamResponse:
    """GET /.auth/login/{code}/start: remember the login server-side, then go to Entra."""
    gw = gateway_of(request)
    code = canonical_code(request.match_info["code"])
    tenant = gw.tenant(code)
    if tenant is None:
        return _unknown(request, gw, code)
    limited = _rate_limited(request, gw)
    if limited is not None:
        return limited
    metadata = await gw.discovery.metadata(source_of(tenant))
    pkce = PkcePair.new()
    nonce = new_nonce()
    redirect_uri = gw.origin_for(request) + paths.CALLBACK
    # Bind the login to this browser (login CSRF, RFC 6749 10.12): the callback must come back with the
    # cookie whose hash the state holds. An existing binding is reused so logins in several tabs work.
    binding = gw.cookie.read_login_binding(request) or secrets.token_urlsafe(32)
    state = await gw.pending_logins.save(
        LoginState(
            code,
            nonce,
            pkce.verifier,
            redirect_uri,
            _return_to(request, gw),
            gw.clock(),
            binding_hash(binding),
        )
    )
    extra: dict[str, str] = {}
    prompt = request.query.get("prompt")
    if prompt in PASSTHROUGH_PROMPTS:
        extra["prompt"] = prompt
    hint = request.query.get("login_hint", "")
    if hint and len(hint) <= MAX_LOGIN_HINT and hint.isprintable():
        extra["login_hint"] = hint
    url = authorize_url(
        metadata,
        tenant,
        redirect_uri=redirect_uri,
        state=state,
        nonce=nonce,
        code_challenge=pkce.challenge,
        extra=extra,
    )
    log.info("login started", extra={"event": "login_start", "company": code})
    redirect = web.HTTPFound(url, headers={"Cache-Control": "no-store"})
    gw.cookie.set_login_binding(redirect, binding)
    raise redirect


def _rate_limited(request: web.Request, gw: Gateway) -> web.Response | None:
    """A 429 with ``Retry-After`` when this client starts sign-ins faster than ``server.login_rate_*``.

    Each start stores login state, so a flood would fill the store; one client's flood only slows that
    client (other addresses keep their own buckets)."""
    client = client_key(request.remote, request.headers.getall("X-Forwarded-For", []), gw.boundary.trusted)
    wait = gw.login_limiter.retry_after(client, gw.clock())
    if not wait:
        return None
    # debug only: a flood would otherwise turn into a flood of log lines
    log.debug("login start rate limited", extra={"event": "login_rate_limited"})
    response = error_response(
        request,
        429,
        "Too many sign-in attempts",
        f"Too many sign-ins were started from your network. Wait {wait} seconds and try again.",
        "too_many_logins",
    )
    response.headers["Retry-After"] = str(wait)
    response.headers["Cache-Control"] = "no-store"
    return response


def binding_hash(binding: str) -> str:
    """What login state stores of the browser's binding cookie (the cookie itself stays in the browser)."""
    return hashlib.sha256(binding.encode()).hexdigest()


async def chooser_page(request: web.Request) -> web.StreamResponse:
    """GET /.auth/login: type a login code or work email."""
    gw = gateway_of(request)
    return views.chooser(_return_to(request, gw), gw.listed_companies(), request_id_of(request))


async def choose(request: web.Request) -> web.StreamResponse:
    """POST /.auth/login: find the company by login code, or by the domain of a work email."""
    gw = gateway_of(request)
    form = await request.post()
    typed = str(form.get("who", ""))[:MAX_LOGIN_HINT].strip()  # an email address fits in 256
    rd = safe_return_to(str(form.get("rd", "")), gw.return_targets.allows)
    code = _find_company(gw, typed.lower())
    if code is None:
        return views.chooser(
            rd,
            gw.listed_companies(),
            request_id_of(request),
            message="We could not find your company. Check the login code or email your administrator "
            "gave you.",
            who=typed,
        )
    raise web.HTTPSeeOther(login_path(code, rd))


def _find_company(gw: Gateway, who: str) -> str | None:
    if "@" in who:
        domain = who.rsplit("@", 1)[1]
        for code, tenant in gw.config.tenants.items():
            if domain in (d.lower() for d in tenant.email_domains):
                return code
        return None
    return who if gw.tenant(who) is not None else None

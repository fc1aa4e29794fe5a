"""Machine-facing endpoints: the assertion JWKS, ``/.auth/me``, health and readiness."""

from __future__ import annotations

import logging

from aiohttp import web

from broker.errors import SessionStoreUnavailable
from broker.gateway import gateway_of
from broker.handlers.session import current_session
from broker.http.responses import error_response
from broker.oidc.verifier import source_of

log = logging.getLogger(__name__)

JWKS_CACHE = "public, max-age=300"


async def jwks(request: web.Request) -> web.StreamResponse:
    """GET /.auth/jwks.json: every assertion key, so backends can verify during key rotation."""
    return web.json_response(gateway_of(request).signer.jwks(), headers={"Cache-Control": JWKS_CACHE})


async def me(request: web.Request) -> web.StreamResponse:
    """GET /.auth/me: the signed-in identity for single-page apps (no tokens)."""
    session = await current_session(gateway_of(request), request)
    if session is None:
        return error_response(request, 401, "Not signed in", "You are not signed in.", "not_signed_in")
    return web.json_response(session.public_claims(), headers={"Cache-Control": "no-store"})


async def healthz(request: web.Request) -> web.StreamResponse:
    """GET /.auth/healthz: the process is alive."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """GET /.auth/readyz: config loaded, session store reachable, at least one company's IdP keys loaded.

    A load balancer takes a replica out of rotation while this is 503, and back when it turns 200. One
    company's unreachable IdP does not make a replica unready: every replica shares that outage, and the
    other companies (and every signed-in session) still work. No key loaded at all means this replica
    cannot reach Microsoft, which other replicas may. The answer is anonymous, so it names no company
    (the chooser hides unlisted ones); which companies are missing goes to the log.

    ``session_store`` is ``ok``, ``degraded`` or the failure. ``degraded`` (still 200, still ready): it
    answers but refused a write in the last 60 s (``store_health.DEGRADED_WINDOW``), as a Redis at
    ``maxmemory`` with ``noeviction`` does. Signed-in users are still served; only sign-ins fail. Every
    replica shares that Redis, so taking this one out of rotation would fix nothing and turn "sign-ins
    fail" into "everything fails": the operator frees memory (docs/operations.md), alerted by this value
    and ``broker_session_store_errors_total``. 503 only when the store does not answer at all.
    """
    gw = gateway_of(request)
    checks: dict[str, str] = {"config": "loaded"}
    try:
        await gw.sessions.store.ping()
        checks["session_store"] = "degraded" if gw.sessions.health.degraded() else "ok"
    except SessionStoreUnavailable as exc:
        checks["session_store"] = str(exc)
    missing = sorted(
        code for code, tenant in gw.config.tenants.items() if not gw.discovery.is_loaded(source_of(tenant))
    )
    if not missing:
        checks["identity_providers"] = "ok"
    else:
        loaded_any = len(missing) < len(gw.config.tenants)
        checks["identity_providers"] = "partial" if loaded_any else "none loaded"
        log.info("readiness: identity provider keys not loaded yet for %s", ", ".join(missing))
    ready = all(value in ("ok", "loaded", "partial", "degraded") for value in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "unavailable", **checks},
        status=200 if ready else 503,
        headers={"Cache-Control": "no-store"},
    )


async def reserved_not_found(request: web.Request) -> web.StreamResponse:
    """Any other ``/.auth/*`` path: the broker's namespace is never proxied."""
    return error_response(request, 404, "Not found", "There is nothing at this address.", "not_found")

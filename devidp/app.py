"""Assemble the dev IdP's aiohttp application."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from devidp import errors
from devidp.authorize import authorize_get, authorize_post
from devidp.context import DEVIDP, DevIdp, html_error, json_error
from devidp.control import rotate_keys, stats, update_user
from devidp.failures import configuration_problems
from devidp.graph import get_member_objects, transitive_member_of
from devidp.keys import SigningKeys
from devidp.logout import error_lookup, index, logout
from devidp.metadata import keys as keys_handler
from devidp.metadata import openid_configuration
from devidp.model import DevIdpConfig
from devidp.store import GrantStore
from devidp.token_endpoint import token

logger = logging.getLogger(__name__)

# Endpoints whose clients are programs expecting JSON; everything else is a browser page.
_JSON_SUFFIXES = ("/token", "/keys", "/openid-configuration")
_JSON_PREFIXES = ("/graph/", "/_devidp/")


def create_devidp_app(
    config: DevIdpConfig,
    public_url: str,
    *,
    clock: Callable[[], float] = time.time,
    keys: SigningKeys | None = None,
) -> web.Application:
    """The dev IdP as an aiohttp app; ``public_url`` (e.g. ``http://127.0.0.1:9000``) is its authority."""
    parts = urlsplit(public_url.rstrip("/"))
    # Routes live at the root, so a path prefix would silently break every advertised endpoint.
    is_origin = parts.scheme in ("http", "https") and parts.netloc and not (parts.path or parts.query)
    if not is_origin or parts.fragment:
        raise ValueError(f"public_url must be an origin like http://127.0.0.1:9000, got {public_url!r}")
    problems = configuration_problems(config)
    if problems:
        raise ValueError("invalid dev IdP directory: " + "; ".join(problems))
    idp = DevIdp(
        config=config,
        public_url=public_url.rstrip("/"),
        keys=keys if keys is not None else SigningKeys.generate(clock()),
        store=GrantStore(clock),
        clock=clock,
    )
    app = web.Application(middlewares=[_hide_internal_errors])
    app[DEVIDP] = idp
    app.router.add_get("/", index)
    app.router.add_get("/error", error_lookup)
    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration)
    app.router.add_get("/{tenant}/discovery/v2.0/keys", keys_handler)
    app.router.add_get("/{tenant}/oauth2/v2.0/authorize", authorize_get)
    app.router.add_post("/{tenant}/oauth2/v2.0/authorize", authorize_post)
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
    app.router.add_get("/{tenant}/oauth2/v2.0/logout", logout)
    app.router.add_post("/{tenant}/oauth2/v2.0/logout", logout)
    for who in ("me", "users/{oid}"):
        app.router.add_post(f"/graph/v1.0/{who}/getMemberObjects", get_member_objects)
        app.router.add_get(f"/graph/v1.0/{who}/transitiveMemberOf", transitive_member_of)
    # Test-only controls (see devidp.control); Entra has nothing like them.
    app.router.add_post("/_devidp/keys/rotate", rotate_keys)
    app.router.add_get("/_devidp/stats", stats)
    app.router.add_post("/_devidp/users/{oid}", update_user)
    return app


@web.middleware
async def _hide_internal_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer unexpected exceptions with a plain 500: the trace goes to the log, never to the client."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        # Only the path: query strings and bodies may hold codes, tokens or secrets.
        logger.exception("unhandled error in the dev IdP", extra={"path": request.path})
        idp = request.app[DEVIDP]
        err = errors.server_error()
        if request.path.endswith(_JSON_SUFFIXES) or request.path.startswith(_JSON_PREFIXES):
            return json_error(idp, request, err)
        return html_error(idp, request, err)

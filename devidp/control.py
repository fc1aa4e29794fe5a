"""Control endpoints under ``/_devidp/``: FOR TESTS ONLY, they have no counterpart in Entra.

They let a test change the world behind the gateway's back, the way an administrator or Microsoft would:

- ``POST /_devidp/keys/rotate[?retire_old=1]``: sign with a new key from now on; the old keys stay
  published (a normal rollover) unless ``retire_old`` (an emergency rotation). Answers
  ``{"kid": new_kid, "published": [kids]}``.
- ``GET /_devidp/stats``: request counters since start, ``{"discovery", "jwks", "token":
  {"authorization_code", "refresh_token"}, "graph"}``, so a test can assert how often the gateway fetched.
- ``POST /_devidp/users/{oid}`` with a JSON object of ``roles``, ``groups``, ``token_fault``,
  ``authorize_error``, ``groups_overage``, ``refresh_delay`` (seconds, at most 60: a slow token endpoint
  for this user's refreshes) and/or ``name``: edit the user; the next token shows it.

Nothing here is authenticated: the dev IdP must never be reachable from anywhere that matters.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from aiohttp import web

from devidp.context import DEVIDP, NO_STORE, json_response
from devidp.failures import AUTHORIZE_ERRORS, code_problem, token_fault_problem
from devidp.model import DevTenant, DevUser

_RETIRE_VALUES = frozenset({"1", "true", "yes"})
MAX_REFRESH_DELAY = 60.0


async def rotate_keys(request: web.Request) -> web.Response:
    """POST /_devidp/keys/rotate: a new current signing key, the old ones kept unless ``retire_old``."""
    idp = request.app[DEVIDP]
    retire_old = request.query.get("retire_old", "").lower() in _RETIRE_VALUES
    key = idp.keys.rotate(idp.clock(), retire_old=retire_old)
    published = [k.kid for k in idp.keys.published]
    return json_response({"kid": key.kid, "published": published}, headers=NO_STORE)


async def stats(request: web.Request) -> web.Response:
    """GET /_devidp/stats: what clients asked for since start."""
    return json_response(request.app[DEVIDP].stats.as_json(), headers=NO_STORE)


async def update_user(request: web.Request) -> web.Response:
    """POST /_devidp/users/{oid}: change a user's mutable fields; all or nothing, every problem reported."""
    idp = request.app[DEVIDP]
    found = idp.config.find_user_by_oid(request.match_info["oid"])
    if found is None:
        return _problem(404, "not_found", [f"no user with oid {request.match_info['oid']!r}"])
    tenant, user = found
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return _problem(400, "invalid_request", ["the body must be a JSON object"])
    problems = [f"{key}: {why}" for key, value in body.items() if (why := _field_problem(key, value))]
    if problems:
        return _problem(400, "invalid_request", problems)
    # Copy on write: the directory gets a new record, so a DevUser object that test code shares between
    # several directories (a module-level constant) is never changed behind its back.
    changes: dict[str, Any] = {k: list(v) if isinstance(v, list) else v for k, v in body.items()}
    updated = dataclasses.replace(user, **changes)
    tenant.users[tenant.users.index(user)] = updated
    return json_response(user_view(tenant, updated), headers=NO_STORE)


def user_view(tenant: DevTenant, user: DevUser) -> dict[str, Any]:
    """The user as the control endpoint reports it after an update."""
    return {
        "tenant_id": tenant.tenant_id,
        "oid": user.oid,
        "name": user.name,
        "username": user.username,
        "roles": list(user.roles),
        "groups": list(user.groups),
        "token_fault": user.token_fault,
        "authorize_error": user.authorize_error,
        "groups_overage": user.groups_overage,
        "refresh_delay": user.refresh_delay,
    }


def _field_problem(key: str, value: object) -> str | None:
    """Why ``value`` cannot be set as ``key`` (only the fields a test needs to change are mutable)."""
    if key in ("roles", "groups"):
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        return None if ok else "must be a list of strings"
    if key == "name":
        return None if isinstance(value, str) and value else "must be a non-empty string"
    if key == "groups_overage":
        return None if isinstance(value, bool) else "must be true or false"
    if key == "refresh_delay":
        ok = (
            isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= MAX_REFRESH_DELAY
        )
        return None if ok else f"must be a number of seconds between 0 and {MAX_REFRESH_DELAY:g}"
    if key == "token_fault":
        return token_fault_problem(value)
    if key == "authorize_error":
        return code_problem(value, AUTHORIZE_ERRORS)
    return (
        "cannot be changed (mutable: roles, groups, token_fault, authorize_error, groups_overage, "
        "refresh_delay, name)"
    )


def _problem(status: int, error: str, problems: list[str]) -> web.Response:
    return json_response({"error": error, "problems": problems}, status=status, headers=NO_STORE)

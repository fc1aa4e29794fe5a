"""Just enough Microsoft Graph to resolve a group overage: a user's group IDs, for their own access token.

``POST /graph/v1.0/{me|users/{oid}}/getMemberObjects`` and ``GET .../transitiveMemberOf``, answered only
to a Graph access token this IdP issued (signature, lifetime, audience and issuer checked) and only about
the token's own user, as with the delegated ``User.Read`` permission.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from aiohttp import web

from devidp.context import DEVIDP, NO_STORE, DevIdp, json_response
from devidp.model import DevUser
from devidp.tokens import GRAPH_APP_ID

_GROUP_TYPE = "#microsoft.graph.group"


class GraphError(Exception):
    """An error in Graph's JSON shape: ``{"error": {"code", "message", "innerError"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"{status} {code}")


def _unauthenticated(message: str) -> GraphError:
    return GraphError(401, "InvalidAuthenticationToken", message)


async def get_member_objects(request: web.Request) -> web.Response:
    """POST .../getMemberObjects with ``{"securityEnabledOnly": bool}``: the user's group IDs."""

    async def answer(user: DevUser) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("securityEnabledOnly"), bool):
            raise GraphError(
                400,
                "Request_BadRequest",
                "The body must be a JSON object with a boolean 'securityEnabledOnly'.",
            )
        # Every configured group is a security group, so securityEnabledOnly changes nothing.
        return {"value": list(user.groups)}

    return await _serve(request, answer)


async def transitive_member_of(request: web.Request) -> web.Response:
    """GET .../transitiveMemberOf: the user's groups as directory objects."""

    async def answer(user: DevUser) -> dict[str, Any]:
        return {"value": [{"@odata.type": _GROUP_TYPE, "id": group} for group in user.groups]}

    return await _serve(request, answer)


async def _serve(
    request: web.Request, answer: Callable[[DevUser], Awaitable[dict[str, Any]]]
) -> web.Response:
    idp = request.app[DEVIDP]
    idp.stats.graph += 1
    try:
        user = _caller(idp, request)
        wanted = request.match_info.get("oid")
        # Delegated User.Read: a user may read their own memberships, nobody else's.
        if wanted is not None and wanted.lower() != user.oid.lower():
            raise GraphError(
                403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
            )
        body = await answer(user)
    except GraphError as exc:
        return _error_response(idp, request, exc)
    return json_response(body, headers=NO_STORE)


def _caller(idp: DevIdp, request: web.Request) -> DevUser:
    """The user whose access token came with the request (RFC 6750 2.1 bearer header)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthenticated("Access token is empty.")
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        raise _unauthenticated("IDX14100: JWT is not well formed.") from None
    key = idp.keys.find(str(kid))
    if key is None:
        raise _unauthenticated("Access token validation failure. Signing key not found.")
    try:
        # Only RS256 with a published key: the algorithm never comes from the token's header.
        claims: dict[str, Any] = jwt.decode(
            token,
            key.private_key.public_key(),
            algorithms=["RS256"],
            audience=GRAPH_APP_ID,
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "require": ["exp"]},
        )
    except jwt.InvalidAudienceError:
        raise _unauthenticated("Access token validation failure. Invalid audience.") from None
    except jwt.PyJWTError:
        raise _unauthenticated("Access token validation failure.") from None
    # Lifetime on the IdP's own clock, so tests that move the clock see tokens expire.
    now = idp.clock()
    if not (claims.get("nbf", 0) <= now < claims["exp"]):
        raise _unauthenticated("Lifetime validation failed, the token is expired.")
    return _user_of(idp, claims)


def _user_of(idp: DevIdp, claims: dict[str, Any]) -> DevUser:
    tenant = idp.config.find_tenant_by_id(str(claims.get("tid", "")))
    if tenant is None or claims.get("iss") != idp.issuer(tenant):
        raise _unauthenticated("Access token validation failure. Invalid issuer.")
    user = tenant.find_user_by_oid(str(claims.get("oid", "")))
    if user is None:
        raise GraphError(404, "Request_ResourceNotFound", "The user of this access token no longer exists.")
    return user


def _error_response(idp: DevIdp, request: web.Request, err: GraphError) -> web.Response:
    inner = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(idp.clock())),
        "request-id": str(uuid.uuid4()),
        "client-request-id": request.headers.get("client-request-id") or str(uuid.uuid4()),
    }
    body = {"error": {"code": err.code, "message": err.message, "innerError": inner}}
    headers = dict(NO_STORE)
    if err.status == 401:
        # RFC 6750 3: a 401 for a protected resource names the Bearer scheme.
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return json_response(body, status=err.status, headers=headers)

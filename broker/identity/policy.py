"""Claims -> broker roles, and whether a session may use a route. Pure.

``Decision`` is re-exported: the rules themselves are compiled by ``policy_compiler.py`` and evaluated by
``policy_rules.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from broker.config.schema import RolesConfig
from broker.identity.policy_compiler import compile_route
from broker.identity.policy_rules import Decision, RequestFacts
from broker.proxy.routing import Route
from broker.sessions.model import Session

__all__ = ["Decision", "decide_access", "identity_from_claims", "map_roles", "string_list"]


def map_roles(
    rules: RolesConfig, app_roles: Iterable[str], groups: Iterable[str]
) -> tuple[str | None, list[str]]:
    """Broker roles from Entra app roles and groups: (most privileged, all in order); default if none.

    ``rules.order`` lists roles from least to most privileged, so "most privileged wins" is the highest
    index (seeds 000 and 003).
    """
    found = {rules.app_roles[r] for r in app_roles if r in rules.app_roles}
    found |= {rules.groups[g] for g in groups if g in rules.groups}
    roles = [r for r in rules.order if r in found]
    if not roles and rules.default is not None:
        roles = [rules.default]
    return (roles[-1] if roles else None), roles


def string_list(value: object) -> list[str]:
    """The strings of a JSON list claim (anything else in it, or a non-list, is ignored)."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def identity_from_claims(rules: RolesConfig, claims: Mapping[str, Any], groups: list[str]) -> dict[str, Any]:
    """The session fields a validated ID token decides, at login and at every refresh alike.

    Display data and broker roles only: the user key (``tid`` + ``oid``) is set once at login and a
    refresh may never change it. ``groups`` comes from the token or, on overage, from Graph.
    """
    role, roles = map_roles(rules, string_list(claims.get("roles")), groups)
    return {
        "name": str(claims.get("name", "")),
        "preferred_username": str(claims.get("preferred_username", "")),
        "email": str(claims.get("email", "")),
        "role": role,
        "roles": roles,
        "groups": groups,
    }


def decide_access(route: Route, session: Session) -> Decision:
    """The route's short form and rules for a session alone (a GET of the route's prefix, client unknown).

    Requests are decided by ``RoutePolicies`` (compiled once per load) on their full ``RequestFacts``; this
    is for callers that only have a session.
    """
    return compile_route(route.config, route.rules).decide(RequestFacts(session, path=route.prefix))

"""Claims -> broker roles, and whether a session may use a route. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from broker.config.schema import RolesConfig
from broker.proxy.routing import Route
from broker.sessions.model import Session


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


@dataclass(frozen=True)
class Decision:
    """An access decision with the reason, for the 403 page and the audit log."""

    allowed: bool
    reason: str = ""


def decide_access(route: Route, session: Session) -> Decision:
    """Every non-empty ``allow`` dimension must admit the session (login code AND role AND group AND user)."""
    allow = route.config.allow
    if allow.login_codes and session.login_code not in allow.login_codes:
        return Decision(False, f"company '{session.login_code}' is not allowed on this route")
    if allow.roles and not set(allow.roles) & set(session.roles):
        return Decision(False, "none of your roles is allowed on this route")
    if allow.groups and not set(allow.groups) & set(session.groups):
        return Decision(False, "none of your groups is allowed on this route")
    if allow.users and session.user_key not in allow.users:
        return Decision(False, "your account is not allowed on this route")
    return Decision(True)

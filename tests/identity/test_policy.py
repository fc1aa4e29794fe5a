"""Pure policy decisions: role mapping and the route's allow rules."""

from __future__ import annotations

from broker.config.schema import AllowConfig, RolesConfig, RouteConfig
from broker.identity.policy import decide_access, map_roles
from broker.proxy.routing import RouteTable
from broker.sessions.model import Session

RULES = RolesConfig(
    order=["reader", "contributor", "writer", "admin"],
    default="reader",
    app_roles={"Wiki.Write": "writer", "Wiki.Admin": "admin"},
    groups={"g-contrib": "contributor"},
)


def test_most_privileged_role_wins() -> None:
    assert map_roles(RULES, ["Wiki.Write", "Wiki.Admin"], ["g-contrib"]) == (
        "admin",
        ["contributor", "writer", "admin"],
    )


def test_default_role_when_none_mapped() -> None:
    assert map_roles(RULES, ["Unknown"], []) == ("reader", ["reader"])
    assert map_roles(RolesConfig(order=["a"]), [], []) == (None, [])


def test_access_requires_every_allow_dimension() -> None:
    route = RouteTable(
        [
            RouteConfig(
                host="h", upstream="http://u", allow=AllowConfig(login_codes=["contoso"], roles=["admin"])
            )
        ]
    ).match("h", "/")
    assert route is not None
    admin = Session(login_code="contoso", tid="t", oid="o", roles=["admin"])
    assert decide_access(route, admin).allowed
    assert not decide_access(route, Session(login_code="contoso", tid="t", oid="o", roles=["reader"])).allowed
    assert not decide_access(route, Session(login_code="fabrikam", tid="t", oid="o", roles=["admin"])).allowed

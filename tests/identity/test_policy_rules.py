"""Route policy (issue 17): each condition, deny wins, the deciding rule named, and properties over random
sessions and rule trees (short form == its tree; deny always wins; not(not(x)) == x)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.config.policy_schema import Condition, PolicyRule
from broker.config.schema import AllowConfig, RouteConfig
from broker.grammar.path_folding import PathRules
from broker.identity.policy_compiler import compile_condition, compile_route, short_form_rules
from broker.identity.policy_rules import RequestFacts, method_overridden
from broker.sessions.model import Session

FINANCE = "finance-group-id"
ADELE = Session(
    login_code="contoso",
    tid="t1",
    oid="o1",
    email="Adele@Contoso.com",
    roles=["reader"],
    groups=[FINANCE],
    claims={"ctry": "FR", "employeeid": "12345", "onpremisessamaccountname": "adele", "xms_pl": ["fr", "en"]},
)
OFFICE = ipaddress.ip_address("10.1.2.3")
HOME = ipaddress.ip_address("203.0.113.9")


def route(policy: dict[str, Any] | None = None, path: str = "/", **more: Any) -> RouteConfig:
    """A route as the loader would build it from YAML."""
    return RouteConfig.model_validate(
        {"host": "h", "upstream": "http://u", "path": path, **more, "policy": policy or {}}
    )


def holds(condition: dict[str, Any], facts: RequestFacts) -> bool:
    """One condition, compiled, on the facts."""
    return compile_condition(Condition.model_validate(condition)).test(facts)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"login_code": "contoso"}, True),
        ({"login_code": ["fabrikam"]}, False),
        ({"role": ["admin", "reader"]}, True),
        ({"role": "admin"}, False),
        ({"group": FINANCE}, True),
        ({"group": "other"}, False),
        ({"user": "t1:o1"}, True),
        ({"user": "t1:o2"}, False),
        ({"email_domain": "contoso.com"}, True),  # domains compare case-insensitively
        ({"email_domain": "@contoso.com.evil"}, False),
        ({"claim": {"name": "ctry", "equals": "FR"}}, True),
        ({"claim": {"name": "ctry", "in": ["DE", "FR"]}}, True),
        ({"claim": {"name": "ctry", "in": ["DE"]}}, False),
        ({"claim": {"name": "employeeid", "matches": "[0-9]{5}"}}, True),
        ({"claim": {"name": "employeeid", "matches": "[0-9]{3}"}}, False),  # whole value, not a search
        ({"claim": {"name": "xms_pl", "equals": "en"}}, True),  # any element of a list claim
        ({"claim": {"name": "absent", "equals": ""}}, False),  # a missing claim never equals anything
        ({"claim": {"name": "email", "equals": "Adele@Contoso.com"}}, True),  # the broker's own fields too
        ({"ip": "10.0.0.0/8"}, True),
        ({"ip": ["192.168.0.0/16", "2001:db8::/32"]}, False),
        ({"method": ["get", "HEAD"]}, True),
        ({"method": "POST"}, False),
        ({"path": "/app/reports"}, True),
        ({"path": "/app/report"}, False),  # segment boundary: /app/report is not a prefix of /app/reports/x
        ({"and": [{"group": FINANCE}, {"ip": "10.0.0.0/8"}]}, True),
        ({"and": [{"group": FINANCE}, {"ip": "11.0.0.0/8"}]}, False),
        ({"or": [{"group": "x"}, {"role": "reader"}]}, True),
        ({"not": {"role": "reader"}}, False),
    ],
)
def test_each_condition(condition: dict[str, Any], expected: bool) -> None:
    facts = RequestFacts(ADELE, "GET", "/app/reports/q1", OFFICE)
    assert holds(condition, facts) is expected


def test_unknown_client_never_matches_an_ip_rule_either_way() -> None:
    facts = RequestFacts(ADELE, client=None)
    assert not holds({"ip": "0.0.0.0/0"}, facts)
    # ...so "deny when outside the office" written as not(ip) refuses a client whose address is unknown.
    assert holds({"not": {"ip": "10.0.0.0/8"}}, facts)


def test_path_rules_fold_like_the_upstream_reads_paths() -> None:
    insensitive = PathRules(case_insensitive=True)
    node = compile_condition(Condition.model_validate({"path": "/App/Admin"}), insensitive)
    assert node.test(RequestFacts(ADELE, path="/app/admin/x"))


def test_deny_wins_and_names_the_deciding_rule_only() -> None:
    policy = compile_route(
        route(
            {
                "allow": [{"name": "finance", "group": FINANCE}, {"name": "secret-rule", "role": "admin"}],
                "deny": [{"name": "outside-office", "not": {"ip": "10.0.0.0/8"}}],
            }
        )
    )
    inside = policy.decide(RequestFacts(ADELE, client=OFFICE))
    assert inside.allowed and inside.rule == "finance"
    outside = policy.decide(RequestFacts(ADELE, client=HOME))
    assert not outside.allowed and outside.rule == "outside-office"
    assert "outside-office" in outside.reason and "finance" not in outside.reason
    stranger = policy.decide(RequestFacts(Session(login_code="contoso", tid="t", oid="o"), client=OFFICE))
    assert not stranger.allowed and stranger.rule == "no allow rule matched"
    assert "secret-rule" not in stranger.reason and "finance" not in stranger.reason


def test_unnamed_rules_are_named_by_position() -> None:
    policy = compile_route(route({"deny": [{"group": "x"}, {"group": FINANCE}]}))
    assert policy.decide(RequestFacts(ADELE)).rule == "deny[1]"


def test_short_form_and_rules_both_must_admit() -> None:
    policy = compile_route(route({"allow": [{"group": FINANCE}]}, allow={"login_codes": ["fabrikam"]}))
    decision = policy.decide(RequestFacts(ADELE))
    assert not decision.allowed and decision.rule == "allow.login_codes"


def test_explain_prints_each_rule_evaluated() -> None:
    policy = compile_route(route({"deny": [{"name": "outside", "not": {"ip": "10.0.0.0/8"}}]}))
    decision, lines = policy.explain(RequestFacts(ADELE, client=HOME))
    assert not decision.allowed
    assert lines == ["deny rule 'outside':", "  yes  not", "    no   client ip in [10.0.0.0/8]"]


def test_method_override_headers_are_spotted_in_any_case() -> None:
    assert method_overridden(["Accept", "x-http-method-override"])
    assert method_overridden(["X-HTTP-Method"])
    assert not method_overridden(["Accept", "X-Method"])


# --- properties --------------------------------------------------------------------------------------

CODES = ["contoso", "fabrikam"]
ROLES = ["reader", "writer", "admin"]
GROUPS = ["g1", "g2", "g3"]
USERS = ["t:o1", "t:o2"]
sessions = st.builds(
    lambda code, roles, groups, user: Session(
        login_code=code, tid="t", oid=user.split(":")[1], roles=roles, groups=groups, claims={"ctry": "FR"}
    ),
    st.sampled_from(CODES),
    st.lists(st.sampled_from(ROLES), unique=True, max_size=3),
    st.lists(st.sampled_from(GROUPS), unique=True, max_size=3),
    st.sampled_from(USERS),
)
facts = st.builds(
    RequestFacts,
    sessions,
    st.sampled_from(["GET", "POST", "DELETE"]),
    st.sampled_from(["/", "/a/", "/a/b", "/c"]),
    st.sampled_from([OFFICE, HOME, None]),
)
allow_lists = st.builds(
    AllowConfig,
    login_codes=st.lists(st.sampled_from(CODES), unique=True, max_size=2),
    roles=st.lists(st.sampled_from(ROLES), unique=True, max_size=2),
    groups=st.lists(st.sampled_from(GROUPS), unique=True, max_size=2),
    users=st.lists(st.sampled_from(USERS), unique=True, max_size=2),
)
leaves: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.builds(lambda v: {"login_code": v}, st.lists(st.sampled_from(CODES), min_size=1, max_size=2)),
    st.builds(lambda v: {"role": v}, st.lists(st.sampled_from(ROLES), min_size=1, max_size=2)),
    st.builds(lambda v: {"group": v}, st.lists(st.sampled_from(GROUPS), min_size=1, max_size=2)),
    st.builds(lambda v: {"user": v}, st.sampled_from(USERS)),
    st.builds(lambda v: {"ip": v}, st.sampled_from(["10.0.0.0/8", "203.0.113.0/24"])),
    st.builds(lambda v: {"method": v}, st.sampled_from(["GET", "POST"])),
    st.builds(lambda v: {"path": v}, st.sampled_from(["/a", "/c"])),
    st.builds(
        lambda v: {"claim": {"name": "ctry", "in": v}}, st.lists(st.sampled_from(["FR", "DE"]), min_size=1)
    ),
)
trees: st.SearchStrategy[dict[str, Any]] = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(lambda c: {"and": c}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda c: {"or": c}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, inner),
    ),
    max_leaves=6,
)


def four_allow_lists(allow: AllowConfig, session: Session) -> bool:
    """The short form's meaning, written out independently: each non-empty list must admit the session."""
    return (
        (not allow.login_codes or session.login_code in allow.login_codes)
        and (not allow.roles or bool(set(allow.roles) & set(session.roles)))
        and (not allow.groups or bool(set(allow.groups) & set(session.groups)))
        and (not allow.users or session.user_key in allow.users)
    )


@settings(max_examples=300, deadline=None)
@given(allow_lists, facts)
def test_short_form_decides_like_its_tree_translation(allow: AllowConfig, request: RequestFacts) -> None:
    short = compile_route(RouteConfig(host="h", upstream="http://u", allow=allow)).decide(request)
    translation = (
        [
            PolicyRule.model_validate(
                {"and": [c.model_dump(by_alias=True, exclude_none=True) for _, c in short_form_rules(allow)]}
            )
        ]
        if short_form_rules(allow)
        else []
    )
    tree = compile_route(
        route({"allow": [r.model_dump(by_alias=True, exclude_none=True) for r in translation]})
    ).decide(request)
    assert short.allowed == tree.allowed == four_allow_lists(allow, request.session)


@settings(max_examples=300, deadline=None)
@given(st.lists(trees, max_size=3), trees, facts)
def test_deny_always_wins(allows: list[dict[str, Any]], deny: dict[str, Any], request: RequestFacts) -> None:
    policy = compile_route(route({"allow": allows, "deny": [deny]}))
    if holds(deny, request):
        assert not policy.decide(request).allowed
    everything = compile_route(route({"allow": [*allows, {"or": [deny, {"not": deny}]}], "deny": [deny]}))
    assert everything.decide(request).allowed is not holds(deny, request)


@settings(max_examples=300, deadline=None)
@given(trees, facts)
def test_double_negation_decides_the_same(tree: dict[str, Any], request: RequestFacts) -> None:
    assert holds({"not": {"not": tree}}, request) is holds(tree, request)
    plain = compile_route(route({"allow": [tree]})).decide(request).allowed
    doubled = compile_route(route({"allow": [{"not": {"not": tree}}]})).decide(request).allowed
    assert plain is doubled

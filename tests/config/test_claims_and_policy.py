"""check-config on header expressions and policy rules: every problem at its file:line (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.config.load import load_config_text
from broker.errors import ConfigError

BASE = """\
server: {public_url: https://gw.example.com}
signing: {keys: [key.pem]}
tenants:
  contoso:
    display_name: Contoso
    tenant_id: 3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c
    client_id: 2e1d0c9b-8a7f-4e6d-5c4b-3a2f1e0d9c8b
    client_secret: s3cret
    keep_claims: [upn, onpremisessamaccountname]
    headers:
      X-Cost: claims.costcenter
routes:
  - host: app.example.com
    path: /app/
    upstream: http://10.0.0.5
    headers:
      X-A: claims.upn | titlecase
      X-B: roles | upper
      X-C: claims.employeeid
      X-D: claims.upn | strip_domain | prefix('CONTOSO\\\\')
    assertion_claims: [aud, upn]
    policy:
      allow:
        - claim: {name: ctry, equals: FR}
        - and: [{ip: 10.0.0.0/33}, {method: FETCH}]
        - claim: {name: upn, matches: "("}
        - path: /other/admin
        - {group: a, role: b}
        - grp: x
"""


def problems() -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(BASE, "b.yaml", Path("."), {}, file_exists=lambda _: True)
    return [str(p) for p in info.value.problems]


def test_every_claim_and_policy_problem_is_reported_at_its_line() -> None:
    found = problems()
    expected = [
        "b.yaml:11: tenants.contoso.headers.X-Cost: claim 'costcenter' is not in keep_claims",
        "b.yaml:17: routes[0].headers.X-A: unknown transformation 'titlecase'",
        "b.yaml:18: routes[0].headers.X-B: upper works on text, and this is a list",
        "b.yaml:21: routes[0].assertion_claims[0]: 'aud' is one of the assertion's own claims",
        "b.yaml:25: routes[0].policy.allow[1].and[0].ip[0]: not an IP network (CIDR) '10.0.0.0/33'",
        "b.yaml:25: routes[0].policy.allow[1].and[1].method[0]: not an HTTP method 'FETCH'",
        "b.yaml:26: routes[0].policy.allow[2].claim.matches: not a regular expression",
        "b.yaml:28: routes[0].policy.allow[4]: give exactly one of and, or, not",
        "b.yaml:29: routes[0].policy.allow[5].grp: unknown key (allowed: and, claim, email_domain, group, ip",
    ]
    for line in expected:
        assert any(f.startswith(line) for f in found), f"missing {line!r} in:\n" + "\n".join(found)
    assert len(found) == len(expected), "\n".join(found)


UNKEPT = """\
server: {public_url: https://gw.example.com}
signing: {keys: [key.pem]}
tenants:
  contoso:
    display_name: Contoso
    tenant_id: 3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c
    client_id: 2e1d0c9b-8a7f-4e6d-5c4b-3a2f1e0d9c8b
    client_secret: s3cret
    keep_claims: [upn, extn.*]
routes:
  - host: app.example.com
    path: /app/
    upstream: http://10.0.0.5
    headers:
      X-C: claims.employeeid
      X-D: claims.extn.costCenter | default(claims.upn)
    policy:
      allow:
        - claim: {name: ctry, equals: FR}
        - path: /other/admin
        - path: /app/admin
"""


def test_claims_not_kept_and_paths_outside_the_route_are_reported() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(UNKEPT, "b.yaml", Path("."), {}, file_exists=lambda _: True)
    found = [str(p) for p in info.value.problems]
    assert found == [
        "b.yaml:15: routes[0].headers.X-C: claim 'employeeid' is not kept by any company reaching this "
        "route: add it to keep_claims",
        "b.yaml:19: routes[0].policy.allow[0]: claim 'ctry' is not kept by any company reaching this route: "
        "add it to keep_claims",
        "b.yaml:20: routes[0].policy.allow[1]: path '/other/admin' is not under the route's path '/app/'",
    ]


def test_rule_trees_are_bounded_in_depth() -> None:
    deep: dict[str, object] = {"group": "g"}
    for _ in range(9):
        deep = {"not": deep}
    text = UNKEPT.split("    headers:")[0] + "    policy: {deny: [" + json.dumps(deep) + "]}\n"
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "b.yaml", Path("."), {}, file_exists=lambda _: True)
    assert [str(p) for p in info.value.problems] == [
        "b.yaml:14: routes[0].policy.deny[0]: nested deeper than 8 levels"
    ]

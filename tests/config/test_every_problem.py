"""A broken file shows every problem in one run, each at its line, and nothing that is not a problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config.load import load_config_text
from broker.errors import ConfigError

BROKEN = """\
server:
  public_url: https://gw.example.com
  workers: many
  lisen: 0.0.0.0:8080
  access_log: "yes"
sessions:
  idle_timeout: soon
  store_timeout: 1h
signing:
  keys: [key.pem, missing.pem]
tenants:
  contoso:
    display_name: Contoso
    tenant_id: 3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c
    client_id: not-a-guid
    client_secret: s3cret
    response_mode: fragment
    roles: {order: [reader], default: admin}
  fabrikam:
    display_name: Fabrikam
    tenant_id: 8b7c6d5e-4f3a-4b2c-9d1e-0f9a8b7c6d5e
    client_id: 2e1d0c9b-8a7f-4e6d-5c4b-3a2f1e0d9c8b
    client_secret: ${FABRIKAM_SECRET}
    roles: {order: [reader, writer]}
  contoso:
    display_name: Contoso again
routes:
  - host: wiki.example.com
    upstream: http://10.0.0.5
    allow: {login_codes: [nobody], roles: [writer]}
    headers: {X-User: shoe_size}
  - host: wiki.example.com
    upstream: http://10.0.0.6
    path: /
  - host: app.example.com
    path: app  # no upstream: an auth-only (forward-auth) route, valid
  - host: old.example.com
    upstream: http://10.0.0.7
    connect_timeout: 0s
"""

EXPECTED = [
    "b.yaml:3: server.workers: must be a number (got 'many')",
    "b.yaml:4: server.lisen: unknown key (allowed: ",
    "b.yaml:5: server.access_log: must be true or false (got 'yes')",
    "b.yaml:7: sessions.idle_timeout: must be a duration like 30s, 15m, 8h (got 'soon')",
    "b.yaml:8: sessions.store_timeout: must be more than 0s and at most 30s",
    "b.yaml:10: signing.keys[1]: key file /etc/broker/missing.pem does not exist",
    "b.yaml:15: tenants.contoso.client_id: must be the application (client) ID GUID (got 'not-a-guid')",
    "b.yaml:17: tenants.contoso.response_mode: must be one of form_post, query (got 'fragment')",
    "b.yaml:18: tenants.contoso.roles.default: 'admin' is not in roles.order",
    "b.yaml:23: tenants.fabrikam.client_secret: environment variable FABRIKAM_SECRET is not set",
    "b.yaml:25: tenants.contoso: duplicate key (YAML would silently keep only the last one)",
    "b.yaml:30: routes[0].allow.login_codes[0]: unknown login code 'nobody'",
    "b.yaml:31: routes[0].headers.X-User: unknown claim 'shoe_size' (one of ",
    "b.yaml:32: routes[1]: overlaps routes[0]: same host and path prefix",
    "b.yaml:36: routes[2].path: must start with '/'",
    "b.yaml:37: routes[3]: timeouts must be positive (they are never disabled)",
]


def test_a_broken_file_shows_every_problem_at_its_line_in_one_run() -> None:
    """Types, an unknown key, durations, GUIDs, references, a duplicate code, an unset secret: all at once.

    The unset secret is reported once: Fabrikam does not also "need a credential", and the route allowing
    Fabrikam's role ``writer`` does not call it "not in any company's roles.order".
    """
    with pytest.raises(ConfigError) as info:
        load_config_text(
            BROKEN, "b.yaml", Path("/etc/broker"), environ={}, file_exists=lambda p: p.name != "missing.pem"
        )
    found = [str(problem) for problem in info.value.problems]
    assert len(found) == len(EXPECTED), "\n".join(found)
    for line, expected in zip(found, EXPECTED, strict=True):
        assert line.startswith(expected), f"{line!r} is not {expected!r}"
    assert "allowed: access_log, header_timeout" in found[1]  # the typo's valid spellings are listed


def test_a_secret_given_twice_is_reported_at_its_file_key() -> None:
    text = BROKEN.replace(
        "client_secret: ${FABRIKAM_SECRET}", "client_secret: x\n    client_secret_file: s.txt"
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "b.yaml", Path("/etc/broker"), environ={}, file_exists=lambda p: True)
    assert (
        "b.yaml:24: tenants.fabrikam.client_secret_file: give either client_secret or client_secret_file, "
        "not both" in str(info.value)
    )
    assert "needs a credential" not in str(info.value)

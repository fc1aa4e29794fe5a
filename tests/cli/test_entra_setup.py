"""``broker entra-setup``: the Entra registration steps generated from the gateway's config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from broker.cli.main import main as broker_cli
from tests.support.certs import make_certificate

CONFIG = """
server: {public_url: "https://gw.example.com"}
signing: {keys: [key.pem]}
tenants:
  contoso:
    display_name: Contoso Ltd
    tenant_id: 3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c
    client_id: 6a4f3e2d-1c0b-4a9f-8e7d-6c5b4a3f2e1d
    client_secret: s3cret
    groups_overage: graph
    roles:
      order: [reader, writer, admin]
      app_roles: {Wiki.Writer: writer, Wiki.Admin: admin}
      groups: {"c7e9a1b3-2d4f-4a6b-8c0e-9f1a2b3c4d5e": reader}
      require_role: true
  fabrikam:
    display_name: Fabrikam
    tenant_id: 8b7c6d5e-4f3a-4b2c-9d1e-0f9a8b7c6d5e
    client_id: 2e1d0c9b-8a7f-4e6d-5c4b-3a2f1e0d9c8b
    certificate: {key_file: fab.key, cert_file: fab.crt}
routes:
  - {host: wiki.example.com, upstream: "http://10.0.0.5", allow: {login_codes: [contoso]}}
  - {host: crm.example.com, upstream: "http://10.0.0.6", allow: {login_codes: [contoso, fabrikam]}}
  - {host: "*.apps.example.com", upstream: "http://10.0.0.7", allow: {login_codes: [contoso]}}
  - {host: fab.example.com, upstream: "http://10.0.0.8", allow: {login_codes: [fabrikam]}}
  - {host: status.example.com, upstream: "http://10.0.0.9", auth: public}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    (tmp_path / "key.pem").write_text("unused by entra-setup")
    key, cert = make_certificate()
    (tmp_path / "fab.key").write_bytes(key)
    (tmp_path / "fab.crt").write_bytes(cert)
    (tmp_path / "broker.yaml").write_text(CONFIG)
    return tmp_path / "broker.yaml"


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert broker_cli(args) == 0
    return capsys.readouterr().out


def test_markdown_for_a_company_with_two_hosts_and_app_roles(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run(["entra-setup", "contoso", "--config", str(config_file)], capsys)
    for uri in (
        "https://gw.example.com/.auth/callback",
        "https://wiki.example.com/.auth/callback",
        "https://crm.example.com/.auth/callback",
        "https://wiki.example.com/.auth/logout/done",
    ):
        assert f"`{uri}`" in out
    assert "fab.example.com" not in out and "status.example.com" not in out  # other company / public route
    assert "`https://gw.example.com/.auth/frontchannel-logout/contoso`" in out
    assert "*.apps.example.com" in out and "Warning" in out  # wildcards cannot be registered
    assert "platform **Web**" in out and "Single tenant" in out
    for claim in ("email", "given_name", "family_name", "login_hint", "sid"):
        assert f"`{claim}`" in out
    assert "`User.Read`" in out and "`offline_access`" in out  # Graph for group overage
    assert "Add groups claim" in out and "**Yes**" in out  # groups mapped; require_role
    assert "New client secret" in out and "s3cret" not in out  # never the secret itself
    roles = json.loads(out.split("```json\n")[1].split("```")[0])
    assert [r["value"] for r in roles] == ["Wiki.Writer", "Wiki.Admin"]
    assert all(r["allowedMemberTypes"] == ["User"] and r["isEnabled"] for r in roles)
    again = run(["entra-setup", "contoso", "--config", str(config_file)], capsys)
    assert again == out  # stable role ids: pasting twice updates, never duplicates


def test_json_for_a_certificate_company(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    guide = json.loads(
        run(["entra-setup", "fabrikam", "--config", str(config_file), "--format", "json"], capsys)
    )
    cert = x509.load_pem_x509_certificate((config_file.parent / "fab.crt").read_bytes())
    assert guide["credential"] == {
        "type": "certificate",
        "upload": "fab.crt",
        "thumbprint_sha1": cert.fingerprint(hashes.SHA1()).hex().upper(),
    }
    assert "https://fab.example.com/.auth/callback" in guide["redirect_uris"]
    assert "https://wiki.example.com/.auth/callback" not in guide["redirect_uris"]
    assert "User.Read" not in guide["api_permissions"] and guide["app_roles"] == []


def test_unknown_code(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert broker_cli(["entra-setup", "nope", "--config", str(config_file)]) == 1
    assert "unknown login code" in capsys.readouterr().err


def test_kept_claims_become_optional_claims_or_a_claims_mapping_with_warnings(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = config_file.read_text().replace(
        "    groups_overage: graph\n",
        "    groups_overage: graph\n"
        "    keep_claims: [upn, ctry, onpremisessamaccountname, employeeid, name]\n",
    )
    config_file.write_text(text)
    guide = json.loads(
        run(["entra-setup", "contoso", "--config", str(config_file), "--format", "json"], capsys)
    )
    assert guide["optional_claims"][-2:] == ["upn", "ctry"]
    assert guide["mapped_claims"] == ["onpremisessamaccountname", "employeeid"]  # name is in every token
    warnings = " ".join(guide["claim_warnings"])
    assert "'onpremisessamaccountname' has a value only for users synced from on-premises" in warnings
    assert "set app_specific_keys: true" in warnings
    markdown = run(["entra-setup", "contoso", "--config", str(config_file)], capsys)
    assert "`upn`, `ctry`" in markdown and "Attributes & Claims" in markdown

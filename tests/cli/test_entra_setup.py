"""``broker entra-setup``: the Entra registration steps generated from the gateway's config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from broker.cli.main import main as broker_cli
from tests.support.certs import ClientCertificate

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
  - host: wiki.example.com
    path: /api/
    upstream: "http://10.0.0.5"
    allow: {login_codes: [contoso]}
    api: {audiences: ["api://wiki"], scopes: [Wiki.Read], app_roles: [Wiki.Sync]}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    (tmp_path / "key.pem").write_text("unused by entra-setup")
    cert = ClientCertificate.generate()
    (tmp_path / "fab.key").write_bytes(cert.key_pem)
    (tmp_path / "fab.crt").write_bytes(cert.certificate_pem)
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


def test_guide_tells_the_admin_what_the_vendor_guides_do(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run(["entra-setup", "contoso", "--config", str(config_file)], capsys)
    assert "Cloud Application Administrator" in out and "Application Developer" in out  # prerequisites
    assert "Name: *gw.example.com (Contoso Ltd sign-in)*" in out
    assert "- `https://gw.example.com/.auth/login/contoso`" in out  # where users sign in
    assert "never in plain e-mail" in out and "expiry" in out and "second secret" in out  # send, rotate
    assert "Send back only the client secret's **Value**" in out and "already in the gateway's config" in out
    for code in ("AADSTS50011", "AADSTS7000222", "AADSTS50105", "AADSTS700016"):
        assert f"| {code} |" in out  # troubleshooting names every code the gateway explains
    fabrikam = run(["entra-setup", "fabrikam", "--config", str(config_file)], capsys)
    assert "8. Send back nothing new." in fabrikam  # a certificate: nothing secret travels


def test_assignment_required_is_recommended_when_everyone_gets_a_default_role(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = config_file.read_text().replace("require_role: true", "default: reader")
    config_file.write_text(text)
    out = run(["entra-setup", "contoso", "--config", str(config_file)], capsys)
    assert "*Assignment required?* **Yes, recommended**" in out and "*everyone*" in out
    guide = json.loads(
        run(["entra-setup", "contoso", "--config", str(config_file), "--format", "json"], capsys)
    )
    assert guide["assignment_recommended"] is True and guide["assignment_required"] is False


def test_html_is_a_printable_page_with_nothing_unescaped(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file.write_text(config_file.read_text().replace("Contoso Ltd", "Contoso <b>Ltd</b>"))
    out = run(["entra-setup", "contoso", "--config", str(config_file), "--format", "html"], capsys)
    assert out.startswith("<!doctype html>") and "@media print" in out
    assert "<code>https://wiki.example.com/.auth/callback</code>" in out and "<table>" in out
    assert "<b>Ltd</b>" not in out and "&lt;b&gt;Ltd&lt;/b&gt;" in out


def test_routes_accepting_tokens_add_expose_an_api_and_application_roles(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run(["entra-setup", "contoso", "--config", str(config_file)], capsys)
    assert "**Expose an API**" in out and "`api://wiki`" in out and "`Wiki.Read`" in out
    assert "**App roles for applications**" in out
    app_roles = json.loads(out.split("```json\n")[2].split("```")[0])
    assert [(r["value"], r["allowedMemberTypes"]) for r in app_roles] == [("Wiki.Sync", ["Application"])]
    fabrikam = run(["entra-setup", "fabrikam", "--config", str(config_file)], capsys)
    assert "Expose an API" not in fabrikam  # its routes accept no tokens


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

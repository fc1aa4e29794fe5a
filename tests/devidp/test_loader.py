"""Loading the dev IdP YAML: the shipped demo file, ${VAR} secrets, problems named by file:line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.devidp import DevIdpConfigError, load_devidp_config

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "devidp.yaml"


def test_demo_config_loads_with_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTOSO_CLIENT_SECRET", "contoso-secret")
    monkeypatch.setenv("FABRIKAM_CLIENT_SECRET", "fabrikam-secret")
    config = load_devidp_config(DEMO_CONFIG)
    contoso, fabrikam = config.tenants
    assert (contoso.display_name, contoso.tenant_id) == ("Contoso", "3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c")
    assert contoso.clients[0].client_secret == "contoso-secret"
    assert fabrikam.clients[0].client_id == "2e1d0c9b-8a7f-4e6d-5c4b-3a2f1e0d9c8b"
    assert [u.username for u in contoso.users] == ["adele@contoso.example", "alex@contoso.example"]
    assert contoso.users[0].roles == ["Wiki.Admin"] and contoso.users[1].roles == []
    assert fabrikam.users[0].roles == ["Wiki.Reader"]
    assert config.find_tenant("FABRIKAM.example") is fabrikam


def test_missing_secret_names_file_line_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONTOSO_CLIENT_SECRET", raising=False)
    monkeypatch.setenv("FABRIKAM_CLIENT_SECRET", "x")
    with pytest.raises(ValueError) as caught:
        load_devidp_config(DEMO_CONFIG)
    message = str(caught.value)
    assert f"{DEMO_CONFIG}:" in message
    assert (
        "tenants[0].clients[0].client_secret: environment variable CONTOSO_CLIENT_SECRET is not set"
        in message
    )


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "devidp.yaml"
    path.write_text(
        "tenants:\n"
        "  - tenant_id: not-a-guid\n"
        "    display_name: Contoso\n"
        "    clients:\n"
        "      - client_id: 6a4f3e2d-1c0b-4a9f-8e7d-6c5b4a3f2e1d\n"
        "        client_secret: s\n"
        "        redirect_uris: [ftp://x]\n"
        "    users:\n"
        "      - oid: 5d1f6b2a-8c3e-4f7a-9b0d-1e2c3a4b5d6e\n"
        "        name: Adele\n"
        "        usernme: adele@contoso.example\n",
        encoding="utf-8",
    )
    with pytest.raises(DevIdpConfigError) as caught:
        load_devidp_config(path)
    found = {(p.key_path, p.line) for p in caught.value.problems}
    assert ("tenants[0].tenant_id", 2) in found
    assert ("tenants[0].clients[0].redirect_uris[0]", 7) in found
    assert ("tenants[0].users[0].usernme", 11) in found  # the typo itself
    assert ("tenants[0].users[0].username", 9) in found  # and the key it left missing
    assert all(str(path) in str(p) for p in caught.value.problems)


def test_duplicate_usernames_across_tenants_are_rejected(tmp_path: Path) -> None:
    tenant = (
        "  - tenant_id: {tid}\n    display_name: T\n    clients: []\n"
        "    users:\n      - {{oid: {oid}, name: A, username: a@example.com}}\n"
    )
    path = tmp_path / "devidp.yaml"
    path.write_text(
        "tenants:\n"
        + tenant.format(
            tid="3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c", oid="5d1f6b2a-8c3e-4f7a-9b0d-1e2c3a4b5d6e"
        )
        + tenant.format(
            tid="8b7c6d5e-4f3a-4b2c-9d1e-0f9a8b7c6d5e", oid="4c3b2a1d-0e9f-4a8b-b7c6-d5e4f3a2b1c0"
        ),
        encoding="utf-8",
    )
    with pytest.raises(
        DevIdpConfigError, match=r"tenants\[1\]\.users\[0\]\.username: 'a@example.com' is already"
    ):
        load_devidp_config(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tenants: [\n", "invalid YAML"),
        ("- a list\n", "must be a mapping"),
        ("tenants: []\n", "at least one tenant is required"),
    ],
)
def test_unusable_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "devidp.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=expected):
        load_devidp_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        load_devidp_config(tmp_path / "absent.yaml")

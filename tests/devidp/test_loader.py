"""Loading the dev IdP YAML: the shipped demo file, ${VAR} secrets, problems named by file:line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from devidp import DevIdpConfigError, load_devidp_config
from tests.support.certs import ClientCertificate

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "devidp.yaml"


def test_demo_config_loads_with_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTOSO_CLIENT_SECRET", "contoso-secret")
    monkeypatch.setenv("FABRIKAM_CLIENT_SECRET", "fabrikam-secret")
    config = load_devidp_config(DEMO_CONFIG)
    contoso, fabrikam = config.tenants
    assert (contoso.display_name, contoso.tenant_id) == ("Contoso", "3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c")
    assert contoso.clients[0].client_secret == "contoso-secret"
    assert fabrikam.clients[0].client_id == "2e1d0c9b-8a7f-4e6d-5c4b-3a2f1e0d9c8b"
    assert [u.username for u in contoso.users] == [
        "adele@contoso.example",
        "alex@contoso.example",
        "mallory@contoso.example",
        "nestor@contoso.example",
    ]
    assert contoso.users[0].roles == ["Wiki.Admin"] and contoso.users[1].roles == []
    # The demo accounts sign in normally; only the two test accounts are set up to fail.
    assert [(u.token_fault, u.authorize_error) for u in contoso.users + fabrikam.users] == [
        (None, None),
        (None, None),
        ("bad_signature", None),
        (None, 50105),
        (None, None),
    ]
    assert not any(c.multi_tenant or c.app_specific_keys or c.token_error for c in contoso.clients)
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


_TENANT = (
    "tenants:\n"
    "  - tenant_id: 3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c\n"
    "    display_name: Contoso\n"
    "    clients:\n"
    "      - client_id: 6a4f3e2d-1c0b-4a9f-8e7d-6c5b4a3f2e1d\n"
    "        redirect_uris: [http://localhost:8080/.auth/callback]\n"
    "{client}"
    "    users:\n"
    "      - oid: 5d1f6b2a-8c3e-4f7a-9b0d-1e2c3a4b5d6e\n"
    "        name: Mallory\n"
    "        username: mallory@contoso.example\n"
    "{user}"
)


SECRET = "        client_secret: s\n"


def _write(tmp_path: Path, client: str, user: str = "") -> Path:
    path = tmp_path / "devidp.yaml"
    path.write_text(_TENANT.format(client=client, user=user), encoding="utf-8")
    return path


def test_failure_settings_and_certificate_file_are_read(
    tmp_path: Path, client_cert: ClientCertificate
) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "broker.pem").write_text(client_cert.pem, encoding="ascii")
    path = _write(
        tmp_path,
        "        certificate_file: certs/broker.pem\n"
        "        token_error: 7000222\n"
        "        multi_tenant: true\n"
        "        app_specific_keys: true\n",
        "        token_fault: hs256_public_key\n"
        "        authorize_error: 50105\n"
        "        groups_overage: true\n",
    )
    config = load_devidp_config(path)
    client = config.tenants[0].clients[0]
    user = config.tenants[0].users[0]
    assert client.client_secret == "" and client.certificates() == [client_cert.certificate]
    assert (client.token_error, client.multi_tenant, client.app_specific_keys) == (7000222, True, True)
    assert (user.token_fault, user.authorize_error, user.groups_overage) == ("hs256_public_key", 50105, True)


def test_inline_certificate_with_a_secret(tmp_path: Path, client_cert: ClientCertificate) -> None:
    pem = "".join(f"          {line}\n" for line in client_cert.pem.splitlines())
    path = _write(tmp_path, f"        client_secret: s\n        certificate_pem: |\n{pem}")
    client = load_devidp_config(path).tenants[0].clients[0]
    assert client.client_secret == "s" and client.certificates() == [client_cert.certificate]


@pytest.mark.parametrize(
    ("client", "user", "key", "line", "message"),
    [
        (SECRET, "        token_fault: wrong\n", "users[0].token_fault", 12, "must be one of wrong_aud"),
        (SECRET, "        authorize_error: 50034\n", "users[0].authorize_error", 12, "must be one of 50105"),
        (SECRET, "        groups_overage: yes please\n", "users[0].groups_overage", 12, "true or false"),
        (SECRET + "        token_error: '7000215'\n", "", "clients[0].token_error", 8, "one of 7000215"),
        (SECRET + "        multi_tenant: 1\n", "", "clients[0].multi_tenant", 8, "true or false"),
        ("", "", "clients[0].client_secret", 5, "is required"),
        ("        certificate_pem: nonsense\n", "", "clients[0].certificate_pem", 7, "PEM X.509"),
        ("        certificate_file: absent.pem\n", "", "clients[0].certificate_file", 7, "cannot read"),
        (
            "        certificate_file: a.pem\n        certificate_pem: b\n",
            "",
            "clients[0].certificate_file",
            7,
            "not both",
        ),
    ],
)
def test_invalid_failure_settings_name_file_line_and_key(
    tmp_path: Path, client: str, user: str, key: str, line: int, message: str
) -> None:
    path = _write(tmp_path, client, user)
    with pytest.raises(DevIdpConfigError) as caught:
        load_devidp_config(path)
    (problem,) = caught.value.problems
    assert (problem.key_path, problem.line) == (f"tenants[0].{key}", line)
    assert message in str(problem) and str(path) in str(problem)

"""Config loading: every problem reported at once, each with file, line and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config.load import load_config, load_config_text, parse_duration
from broker.errors import ConfigError

GOOD = """
server: {public_url: "https://gw.example.com"}
signing: {keys: [key.pem]}
tenants:
  contoso:
    display_name: Contoso
    tenant_id: 3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c
    client_id: 6a4f3e2d-1c0b-4a9f-8e7d-6c5b4a3f2e1d
    client_secret: ${SECRET}
routes:
  - {host: wiki.example.com, upstream: "http://10.0.0.5:8080", allow: {login_codes: [contoso]}}
"""


def exists(_: Path) -> bool:
    return True


def test_good_config_loads_with_defaults() -> None:
    config = load_config_text(GOOD, "b.yaml", environ={"SECRET": "s3cret"}, file_exists=exists)
    tenant = config.tenants["contoso"]
    assert tenant.client_secret == "s3cret" and tenant.response_mode == "form_post"
    assert tenant.authority == "https://login.microsoftonline.com"
    assert config.sessions.store == "memory" and config.sessions.idle_timeout == 8 * 3600


def test_every_problem_is_reported_with_line_and_key() -> None:
    bad = GOOD.replace("display_name: Contoso", "display_name: Contoso\n    colour: blue")
    with pytest.raises(ConfigError) as info:
        load_config_text(bad, "b.yaml", environ={}, file_exists=exists)
    text = str(info.value)
    assert "b.yaml:7: tenants.contoso.colour: unknown key" in text
    assert "b.yaml:10: tenants.contoso.client_secret: environment variable SECRET is not set" in text
    assert len(info.value.problems) == 2


TWO_COMPANIES = (
    GOOD.replace(
        "routes:",
        """  fabrikam:
    display_name: Fabrikam
    tenant_id: 8b7c6d5e-4f3a-4b2c-9d1e-0f9a8b7c6d5e
    client_id: not-a-guid
    client_secret: x
    roles: {order: [reader], default: admin}
routes:""",
    )
    + """  - {host: wiki.example.com, upstream: "http://10.0.0.9", path: /, allow: {login_codes: [nobody]}}
  - {host: other.example.com, upstream: "http://10.0.0.6", connect_timeout: soon}
"""
)


def test_type_errors_do_not_hide_the_other_problems() -> None:
    """One run reports type errors and every semantic problem of the parts that did build."""
    with pytest.raises(ConfigError) as info:
        load_config_text(TWO_COMPANIES, "b.yaml", environ={"SECRET": "x"}, file_exists=exists)
    text = str(info.value)
    assert "b.yaml:19: routes[2].connect_timeout: must be a duration" in text  # the type error
    assert "b.yaml:13: tenants.fabrikam.client_id: must be the application (client) ID GUID" in text
    assert "b.yaml:15: tenants.fabrikam.roles.default: 'admin' is not in roles.order" in text
    assert "b.yaml:18: routes[1].allow.login_codes[0]: unknown login code 'nobody'" in text
    assert "b.yaml:18: routes[1]: overlaps routes[0]" in text
    assert len(info.value.problems) == 5, text


def test_check_config_command_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from broker.cli.main import main as broker_cli

    (tmp_path / "b.yaml").write_text(TWO_COMPANIES)
    assert broker_cli(["check-config", str(tmp_path / "b.yaml")]) == 1
    err = capsys.readouterr().err
    assert "problem(s)" in err and f"{tmp_path / 'b.yaml'}:19: routes[2].connect_timeout" in err
    assert "environment variable SECRET is not set" in err  # secrets are named, never printed


def test_semantic_problems_are_located() -> None:
    bad = GOOD.replace("login_codes: [contoso]", "login_codes: [fabrikam]").replace(
        "tenant_id: 3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c", "tenant_id: not a guid"
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(bad, "b.yaml", environ={"SECRET": "x"}, file_exists=exists)
    text = str(info.value)
    assert "b.yaml:7: tenants.contoso.tenant_id: must be a GUID or a verified domain" in text
    assert "b.yaml:11: routes[0].allow.login_codes[0]: unknown login code 'fabrikam'" in text


def test_duplicate_login_code_is_reported() -> None:
    doubled = GOOD.replace("routes:", "  contoso: {display_name: X}\nroutes:")
    with pytest.raises(ConfigError, match=r"b.yaml:10: tenants.contoso: duplicate key"):
        load_config_text(doubled, "b.yaml", environ={"SECRET": "x"}, file_exists=exists)


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"b.yaml:3: not valid YAML"):
        load_config_text("server:\n  a: 1\n b: [", "b.yaml")


def test_plain_http_only_for_localhost() -> None:
    bad = GOOD.replace("https://gw.example.com", "http://gw.example.com")
    with pytest.raises(ConfigError, match="public_url must use https"):
        load_config_text(bad, "b.yaml", environ={"SECRET": "x"}, file_exists=exists)


def test_secret_from_file(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("from-file\n")
    (tmp_path / "key.pem").write_text("unused")
    text = GOOD.replace("client_secret: ${SECRET}", "client_secret_file: secret.txt")
    (tmp_path / "b.yaml").write_text(text)
    assert load_config(tmp_path / "b.yaml").tenants["contoso"].client_secret == "from-file"


def test_unreadable_secret_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text("unused")
    (tmp_path / "b.yaml").write_text(GOOD.replace("client_secret: ${SECRET}", "client_secret_file: nope.txt"))
    with pytest.raises(ConfigError, match="client_secret_file: cannot read secret file"):
        load_config(tmp_path / "b.yaml")


def test_demo_config_is_valid(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    key.write_text("unused")
    env = {"CONTOSO_CLIENT_SECRET": "a", "FABRIKAM_CLIENT_SECRET": "b", "BROKER_DEMO_SIGNING_KEY": str(key)}
    env["BROKER_DEMO_SESSION_KEY"] = "c2Vzc2lvbi1rZXktZm9yLXRoZS1kZW1vLXRlc3QtMzJieXRlcw=="
    config = load_config(Path(__file__).parents[2] / "config" / "demo.yaml", environ=env)
    assert set(config.tenants) == {"contoso", "fabrikam"}


@pytest.mark.parametrize(("text", "seconds"), [(90, 90.0), ("90s", 90.0), ("15m", 900.0), ("8h", 28800.0)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def schema_field_names() -> set[str]:
    """Every key any schema model accepts."""
    from broker.config import schema

    names: set[str] = set()
    for obj in vars(schema).values():
        if isinstance(obj, type) and issubclass(obj, schema.ConfigModel) and obj is not schema.ConfigModel:
            names |= set(obj.model_fields)
    assert {"public_url", "client_secret", "secret_keys", "max_body"} <= names  # the walk finds the models
    return names


def test_example_config_loads_and_documents_every_option(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "config" / "broker.example.yaml"
    text = example.read_text()
    config = load_config_text(
        text,
        str(example),
        tmp_path,
        {"CONTOSO_CLIENT_SECRET": "x", "SESSION_KEY": "c2Vzc2lvbi1rZXktZm9yLXRoZS1kZW1vLXRlc3QtMzJieXRlcw=="},
        file_exists=exists,
    )
    assert "contoso" in config.tenants
    missing = {name for name in schema_field_names() if f"{name}:" not in text}
    assert not missing, f"options not documented in broker.example.yaml: {sorted(missing)}"


def test_check_config_loads_the_key_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from broker.cli.main import main as broker_cli

    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    (tmp_path / "b.yaml").write_text(GOOD.replace("${SECRET}", "x"))
    assert broker_cli(["check-config", str(tmp_path / "b.yaml")]) == 1
    assert "signing.keys: cannot load key" in capsys.readouterr().err
    from broker.identity.assertion import generate_es256_pem

    (tmp_path / "key.pem").write_bytes(generate_es256_pem())
    assert broker_cli(["check-config", str(tmp_path / "b.yaml")]) == 0
    assert "OK (1 companies, 1 routes)" in capsys.readouterr().out


def test_check_config_reports_every_unusable_file_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from broker.cli.main import main as broker_cli

    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    (tmp_path / "cert.pem").write_text("not a certificate")
    text = GOOD.replace("client_secret: ${SECRET}", "certificate: {key_file: key.pem, cert_file: cert.pem}")
    (tmp_path / "b.yaml").write_text(text)
    assert broker_cli(["check-config", str(tmp_path / "b.yaml")]) == 1
    err = capsys.readouterr().err
    assert "2 problem(s)" in err
    assert f"{tmp_path / 'b.yaml'}: signing.keys: cannot load key" in err
    assert f"{tmp_path / 'b.yaml'}: tenants.contoso.certificate: cannot load certificate credential" in err


def test_routes_to_one_upstream_differing_only_by_folding_are_refused() -> None:
    """/Admin/ and /admin./ next to /admin on one upstream: a folding upstream cannot tell them apart."""
    routes = """  - {host: wiki.example.com, upstream: "http://10.0.0.5:8080", path: /Admin/, auth: public}
  - {host: wiki.example.com, upstream: "http://10.0.0.5:8080/", path: /admin., auth: public}
  - {host: wiki.example.com, upstream: "http://10.0.0.6", path: /ADMIN, auth: public}
  - {host: wiki.example.com, upstream: "http://10.0.0.6", path: /x/.../, auth: public}
"""
    with pytest.raises(ConfigError) as info:
        load_config_text(GOOD + routes, "b.yaml", environ={"SECRET": "s"}, file_exists=exists)
    text = str(info.value)
    assert "routes[2]: differs from routes[1] only by case or trailing dots/spaces" in text
    assert "routes[4].path: has a segment that servers read differently" in text
    assert len(info.value.problems) == 2  # /ADMIN on another upstream is fine


@pytest.mark.parametrize(
    ("server_extra", "route_extra", "message"),
    [
        ('strip_request_headers: ["X Bad"]', "", r"strip_request_headers\[0\]: not a header name"),
        ('strip_request_headers: ["X-*"]', "", r"strip_request_headers\[0\]: prefix 'X-\*' is too short"),
        ("", 'websocket_origins: ["https://app.example.com/"]', r"websocket_origins\[0\]: must be an origin"),
        ("", 'websocket_origins: ["*"]', r"websocket_origins\[0\]: must be an origin"),
        (
            "",
            'websocket_origins: ["https://u@app.example.com"]',
            r"websocket_origins\[0\]: must be an origin",
        ),
    ],
)
def test_header_strip_list_and_websocket_origins_are_checked(
    server_extra: str, route_extra: str, message: str
) -> None:
    text = GOOD.replace(
        'public_url: "https://gw.example.com"', f'public_url: "https://gw.example.com", {server_extra}'
    )
    text = text.replace(
        "allow: {login_codes: [contoso]}", f"allow: {{login_codes: [contoso]}}, {route_extra}"
    )
    text = text.replace(", }", "}")
    with pytest.raises(ConfigError, match=message):
        load_config_text(text, "b.yaml", environ={"SECRET": "x"}, file_exists=exists)


def test_header_strip_list_and_websocket_origins_accept_good_values() -> None:
    text = GOOD.replace(
        'public_url: "https://gw.example.com"',
        'public_url: "https://gw.example.com", strip_request_headers: [X-Acme-User, X-Acme-Auth-*]',
    ).replace(
        "allow: {login_codes: [contoso]}",
        "allow: {login_codes: [contoso]}, websocket_origins: [https://portal.example.com]",
    )
    config = load_config_text(text, "b.yaml", environ={"SECRET": "x"}, file_exists=exists)
    assert config.server.strip_request_headers == ["X-Acme-User", "X-Acme-Auth-*"]
    assert config.routes[0].websocket_origins == ["https://portal.example.com"]


@pytest.mark.parametrize("value", ["0", "0s", "31s", "1h"])
def test_store_timeout_must_be_bounded(value: str) -> None:
    text = GOOD.replace("signing:", f"sessions: {{store_timeout: {value}}}\nsigning:")
    with pytest.raises(ConfigError, match=r"sessions.store_timeout: must be more than 0s and at most 30s"):
        load_config_text(text, "b.yaml", environ={"SECRET": "x"}, file_exists=exists)


def test_store_timeout_defaults_to_two_seconds_and_reaches_the_sockets() -> None:
    from broker.config.schema import DEFAULT_STORE_TIMEOUT
    from broker.sessions.redis_url import connect

    config = load_config_text(GOOD, "b.yaml", environ={"SECRET": "x"}, file_exists=exists)
    assert config.sessions.store_timeout == DEFAULT_STORE_TIMEOUT == 2.0
    kwargs = connect("redis://127.0.0.1:6379/0", store_timeout=3.0).connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 1.5

"""Load the development IdP's directory from YAML, reporting every problem at once with file:line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml
from cryptography import x509

from broker.config.env import expand_env
from broker.errors import ConfigProblem, MissingEnvironmentVariable
from devidp.failures import AUTHORIZE_ERRORS, TOKEN_ERRORS, code_problem, token_fault_problem
from devidp.model import DevApi, DevClient, DevIdpConfig, DevTenant, DevUser, is_guid

T = TypeVar("T")

_TENANT_KEYS = frozenset({"tenant_id", "display_name", "domains", "clients", "users"})
_CLIENT_KEYS = frozenset(
    {
        "client_id",
        "client_secret",
        "redirect_uris",
        "post_logout_redirect_uris",
        "display_name",
        "certificate_pem",
        "certificate_file",
        "token_error",
        "multi_tenant",
        "app_specific_keys",
        "api",
    }
)
_API_KEYS = frozenset({"app_id_uri", "scopes", "access_token_version", "app_roles"})
_USER_KEYS = frozenset(
    {
        "oid",
        "name",
        "username",
        "email",
        "given_name",
        "family_name",
        "roles",
        "groups",
        "claims",
        "token_fault",
        "authorize_error",
        "groups_overage",
    }
)


class DevIdpConfigError(ValueError):
    """The dev IdP's YAML is unusable; ``problems`` lists every problem, each with file, line and key."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class _Reader:
    """Walks the parsed YAML, converting values and collecting problems instead of stopping at the first."""

    def __init__(self, file: str, lines: dict[str, int]) -> None:
        self.file = file
        # Files the YAML names (certificates) are relative to the YAML itself, not the working directory.
        self.base_dir = Path(file).parent
        self.lines = lines
        self.problems: list[ConfigProblem] = []

    def problem(self, path: str, message: str) -> None:
        """Record a problem at ``path``, located at the nearest line known for it or an ancestor."""
        probe = path
        while probe and probe not in self.lines:
            probe = probe[: max(probe.rfind("."), probe.rfind("["), 0)]
        self.problems.append(ConfigProblem(self.file, self.lines.get(probe), path, message))

    def mapping(self, value: object, path: str, allowed: frozenset[str]) -> dict[str, Any] | None:
        """``value`` as a mapping whose keys are all in ``allowed`` (typos are errors, not ignored)."""
        if not isinstance(value, dict):
            self.problem(path, "must be a mapping")
            return None
        for key in value:
            if key not in allowed:
                self.problem(_join(path, key), f"unknown key (expected one of {', '.join(sorted(allowed))})")
        return value

    def string(self, data: dict[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
        """A string value with ``${VAR}`` expanded; ``None`` when optional and absent."""
        where = _join(path, key)
        value = data.get(key)
        if value is None:
            if required:
                self.problem(where, "is required")
            return None
        expanded = self.expand(value, where)
        if required and expanded == "":
            self.problem(where, "must not be empty")
            return None
        return expanded

    def expand(self, value: object, where: str) -> str | None:
        """``value`` as a string with ``${VAR}`` references replaced from the environment."""
        if not isinstance(value, str):
            self.problem(where, "must be a string")
            return None
        try:
            return expand_env(value)
        except MissingEnvironmentVariable as exc:
            self.problem(where, str(exc))
            return None

    def guid(self, data: dict[str, Any], key: str, path: str) -> str | None:
        """A required GUID (tenant, app and object IDs are GUIDs in Entra)."""
        value = self.string(data, key, path)
        if value is not None and not is_guid(value):
            self.problem(_join(path, key), f"must be a lowercase GUID, got {value!r}")
            return None
        return value

    def boolean(self, data: dict[str, Any], key: str, path: str) -> bool:
        """An optional boolean, ``False`` when absent (YAML's ``yes``/``no`` are not accepted as strings)."""
        value = data.get(key, False)
        if not isinstance(value, bool):
            self.problem(_join(path, key), f"must be true or false, got {value!r}")
            return False
        return value

    def checked(
        self, data: dict[str, Any], key: str, path: str, check: Callable[[object], str | None]
    ) -> Any:
        """An optional value that ``check`` accepts (it returns why not), ``None`` when absent or invalid."""
        value = data.get(key)
        problem = check(value)
        if problem is not None:
            self.problem(_join(path, key), problem)
            return None
        return value

    def strings(self, data: dict[str, Any], key: str, path: str) -> list[str]:
        """An optional list of strings, each with ``${VAR}`` expanded."""
        value = data.get(key, [])
        if not isinstance(value, list):
            self.problem(_join(path, key), "must be a list")
            return []
        result = []
        for i, item in enumerate(value):
            expanded = self.expand(item, f"{_join(path, key)}[{i}]")
            if expanded is not None:
                result.append(expanded)
        return result

    def items(
        self, data: dict[str, Any], key: str, path: str, read: Callable[[object, str], T | None]
    ) -> list[T]:
        """A list of sub-structures, each read by ``read``."""
        value = data.get(key, [])
        if not isinstance(value, list):
            self.problem(_join(path, key), "must be a list")
            return []
        read_items = (read(item, f"{_join(path, key)}[{i}]") for i, item in enumerate(value))
        return [item for item in read_items if item is not None]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def load_devidp_config(path: str | Path) -> DevIdpConfig:
    """Read the dev IdP's YAML; secrets come from ``${VAR}`` references; raise ValueError on bad input."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except OSError as exc:
        raise DevIdpConfigError([ConfigProblem(file, None, "", f"cannot read: {exc.strerror}")]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise DevIdpConfigError([ConfigProblem(file, line, "", f"invalid YAML: {exc}")]) from exc
    reader = _Reader(file, _line_numbers(node))
    config = _read_config(reader, data)
    _check_unique(reader, config)
    if reader.problems:
        raise DevIdpConfigError(reader.problems)
    return config


def _read_config(reader: _Reader, data: object) -> DevIdpConfig:
    root = reader.mapping(data, "", frozenset({"tenants"}))
    if root is None:
        return DevIdpConfig(tenants=[])
    if not root.get("tenants"):
        reader.problem("tenants", "at least one tenant is required")
    return DevIdpConfig(tenants=reader.items(root, "tenants", "", lambda v, p: _read_tenant(reader, v, p)))


def _read_tenant(reader: _Reader, value: object, path: str) -> DevTenant | None:
    data = reader.mapping(value, path, _TENANT_KEYS)
    if data is None:
        return None
    tenant_id = reader.guid(data, "tenant_id", path)
    display_name = reader.string(data, "display_name", path)
    domains = reader.strings(data, "domains", path)
    clients = reader.items(data, "clients", path, lambda v, p: _read_client(reader, v, p))
    users = reader.items(data, "users", path, lambda v, p: _read_user(reader, v, p))
    if tenant_id is None or display_name is None:
        return None
    return DevTenant(tenant_id, display_name, [d.lower() for d in domains], clients, users)


def _read_client(reader: _Reader, value: object, path: str) -> DevClient | None:
    data = reader.mapping(value, path, _CLIENT_KEYS)
    if data is None:
        return None
    client_id = reader.guid(data, "client_id", path)
    has_certificate = "certificate_pem" in data or "certificate_file" in data
    certificate_pem = _read_certificate(reader, data, path)
    # A certificate-only app has no secret: then an absent or empty client_secret is the norm.
    secret = reader.string(data, "client_secret", path, required=not has_certificate)
    redirect_uris = reader.strings(data, "redirect_uris", path)
    logout_uris = reader.strings(data, "post_logout_redirect_uris", path)
    api = _read_api(reader, data["api"], _join(path, "api")) if "api" in data else None
    # An app without redirect URIs is a daemon: it can only use the client_credentials grant (the
    # authorize endpoint matches no redirect URI for it).
    for key, uris in (("redirect_uris", redirect_uris), ("post_logout_redirect_uris", logout_uris)):
        for i, uri in enumerate(uris):
            parts = urlsplit(uri)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
                reader.problem(
                    f"{_join(path, key)}[{i}]", f"must be an absolute http(s) URL without #, got {uri!r}"
                )
    display_name = reader.string(data, "display_name", path, required=False) or ""
    token_error = reader.checked(data, "token_error", path, lambda v: code_problem(v, TOKEN_ERRORS))
    multi_tenant = reader.boolean(data, "multi_tenant", path)
    app_specific_keys = reader.boolean(data, "app_specific_keys", path)
    if client_id is None or (secret is None and not has_certificate):
        return None
    return DevClient(
        client_id,
        secret or "",
        redirect_uris,
        logout_uris,
        display_name,
        certificate_pem=certificate_pem,
        token_error=token_error,
        multi_tenant=multi_tenant,
        app_specific_keys=app_specific_keys,
        api=api,
    )


def _read_api(reader: _Reader, value: object, path: str) -> DevApi | None:
    """ "Expose an API": App ID URI, scopes, accessTokenAcceptedVersion, app roles granted to apps."""
    data = reader.mapping(value, path, _API_KEYS)
    if data is None:
        return None
    uri = reader.string(data, "app_id_uri", path)
    version = data.get("access_token_version", 2)
    if version not in (1, 2):
        reader.problem(_join(path, "access_token_version"), "must be 1 or 2")
    grants = data.get("app_roles", {})
    if not isinstance(grants, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(r, str) for r in v)
        for k, v in grants.items()
    ):
        reader.problem(_join(path, "app_roles"), "must map client IDs to lists of role values")
        grants = {}
    if uri is None:
        return None
    return DevApi(
        uri, reader.strings(data, "scopes", path), int(version), {str(k): list(v) for k, v in grants.items()}
    )


def _read_certificate(reader: _Reader, data: dict[str, Any], path: str) -> str | None:
    """The PEM from ``certificate_pem`` or from the file ``certificate_file`` names; checked to parse."""
    if "certificate_pem" in data and "certificate_file" in data:
        reader.problem(_join(path, "certificate_file"), "give certificate_pem or certificate_file, not both")
        return None
    key = "certificate_file" if "certificate_file" in data else "certificate_pem"
    where = _join(path, key)
    if key == "certificate_file":
        pem = _read_certificate_file(reader, data, path)
    else:
        pem = reader.string(data, key, path, required=False)
    if pem is None:
        return None
    try:
        x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        reader.problem(where, "must hold a PEM X.509 certificate (-----BEGIN CERTIFICATE-----)")
        return None
    return pem


def _read_certificate_file(reader: _Reader, data: dict[str, Any], path: str) -> str | None:
    name = reader.string(data, "certificate_file", path)
    if name is None:
        return None
    try:
        return (reader.base_dir / name).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a PEM text file"
        reader.problem(_join(path, "certificate_file"), f"cannot read {name!r}: {reason}")
        return None


def _read_claims(reader: _Reader, data: dict[str, Any], path: str) -> dict[str, str | list[str]]:
    """A user's optional claims: name -> string or list of strings."""
    raw = data.get("claims", {})
    where = _join(path, "claims")
    if not isinstance(raw, dict):
        reader.problem(where, "must be a mapping of claim name to value")
        return {}
    claims: dict[str, str | list[str]] = {}
    for name, value in raw.items():
        if isinstance(value, list):
            claims[str(name)] = reader.strings(raw, str(name), where)
        elif (text := reader.string(raw, str(name), where)) is not None:
            claims[str(name)] = text
    return claims


def _read_user(reader: _Reader, value: object, path: str) -> DevUser | None:
    data = reader.mapping(value, path, _USER_KEYS)
    if data is None:
        return None
    oid = reader.guid(data, "oid", path)
    name = reader.string(data, "name", path)
    username = reader.string(data, "username", path)
    user = DevUser(
        oid=oid or "",
        name=name or "",
        username=username or "",
        email=reader.string(data, "email", path, required=False),
        given_name=reader.string(data, "given_name", path, required=False),
        family_name=reader.string(data, "family_name", path, required=False),
        roles=reader.strings(data, "roles", path),
        groups=reader.strings(data, "groups", path),
        claims=_read_claims(reader, data, path),
        token_fault=reader.checked(data, "token_fault", path, token_fault_problem),
        authorize_error=reader.checked(
            data, "authorize_error", path, lambda v: code_problem(v, AUTHORIZE_ERRORS)
        ),
        groups_overage=reader.boolean(data, "groups_overage", path),
    )
    return user if oid and name and username else None


def _check_unique(reader: _Reader, config: DevIdpConfig) -> None:
    """IDs, domains and usernames must be unique across tenants: sign-in looks users up by username."""
    seen: dict[str, str] = {}
    for t, tenant in enumerate(config.tenants):
        named = [(f"tenants[{t}].tenant_id", tenant.tenant_id)]
        named += [(f"tenants[{t}].domains[{i}]", d) for i, d in enumerate(tenant.domains)]
        named += [(f"tenants[{t}].clients[{i}].client_id", c.client_id) for i, c in enumerate(tenant.clients)]
        named += [
            (f"tenants[{t}].users[{i}].username", u.username.lower()) for i, u in enumerate(tenant.users)
        ]
        for path, value in named:
            if value in seen:
                reader.problem(path, f"{value!r} is already used at {seen[value]}")
            else:
                seen[value] = path


def _line_numbers(
    node: yaml.Node | None, path: str = "", lines: dict[str, int] | None = None
) -> dict[str, int]:
    """Map each key path (``tenants[0].clients[1].client_id``) to its 1-based line in the file."""
    lines = {} if lines is None else lines
    if node is None:
        return lines
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = _join(path, str(key_node.value))
            _line_numbers(value_node, child, lines)
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_numbers(item, f"{path}[{i}]", lines)
    return lines

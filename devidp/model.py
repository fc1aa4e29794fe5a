"""The development IdP's directory: tenants, their app registrations and their users."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from cryptography import x509

# Entra ignores the port of loopback redirect URIs so native and local apps can pick any free port.
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1"})
# Path segments that name no single directory: any work account may sign in (``common`` also takes
# personal accounts in Entra, which the dev IdP does not model).
MULTI_TENANT_SEGMENTS = frozenset({"organizations", "common"})
# Entra's limit for groups in a JWT; beyond it the token points at Graph instead (group overage).
GROUPS_CLAIM_LIMIT = 200


@dataclass
class DevApi:
    """ "Expose an API" on an app registration: its App ID URI, scopes, token version and app roles."""

    app_id_uri: str
    scopes: list[str] = field(default_factory=list)
    # accessTokenAcceptedVersion in the app manifest: 1 (sts.windows.net issuer, App ID URI audience) or 2.
    access_token_version: int = 2
    # App roles granted to other applications (client ID -> role values): "App roles for applications".
    app_roles: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class DevClient:
    """An app registration (a confidential Web client) in one tenant."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    display_name: str = ""
    # PEM of the X.509 certificate(s) accepted for private_key_jwt; "" secret then means "no secret".
    certificate_pem: str | None = None
    # An AADSTS code every token request of this app fails with (see devidp.policy.TOKEN_ERRORS).
    token_error: int | None = None
    # An "organizations" app: usable through /organizations and /common by users of every tenant.
    multi_tenant: bool = False
    # Sign this app's ID tokens with a key of its own, published only at keys?appid= (claims mapping).
    app_specific_keys: bool = False
    # The API this app exposes (access tokens for it: delegated with scp, app-only with roles).
    api: DevApi | None = None

    def certificates(self) -> list[x509.Certificate]:
        """The registered certificates (a PEM bundle may hold several, e.g. during a rollover)."""
        if not self.certificate_pem:
            return []
        return x509.load_pem_x509_certificates(self.certificate_pem.encode("ascii"))

    @property
    def has_secret(self) -> bool:
        """Whether a client secret is registered; an empty one never authenticates anybody."""
        return bool(self.client_secret)

    def accepts_redirect_uri(self, uri: str) -> bool:
        """Whether ``uri`` is registered for this app (exact match; loopback ports ignored)."""
        return any(redirect_uri_matches(registered, uri) for registered in self.redirect_uris)

    def accepts_post_logout_redirect_uri(self, uri: str) -> bool:
        """Whether ``uri`` is a registered post-logout redirect URI of this app."""
        return any(redirect_uri_matches(registered, uri) for registered in self.post_logout_redirect_uris)


@dataclass
class DevUser:
    """A user account homed in one tenant; ``oid`` is its stable object ID there."""

    oid: str
    name: str
    username: str
    email: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    roles: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    # Optional and directory-extension claims this user's ID tokens carry when the app asks for them in
    # Entra's token configuration (upn, onpremisessamaccountname, employeeid, extn.*...).
    claims: dict[str, str | list[str]] = field(default_factory=dict)
    # How this user's ID tokens are broken on purpose (see devidp.policy.TOKEN_FAULTS).
    token_fault: str | None = None
    # An AADSTS code sent to the app instead of a code when this user signs in (policy.AUTHORIZE_ERRORS).
    authorize_error: int | None = None
    # Force the group-overage shape even with few groups (it also applies past GROUPS_CLAIM_LIMIT).
    groups_overage: bool = False
    # Seconds the token endpoint waits before answering a refresh of this user's grant (a slow Entra; lets
    # tests land a logout or a revocation deterministically in the middle of a refresh).
    refresh_delay: float = 0.0

    @property
    def has_group_overage(self) -> bool:
        """Whether ID tokens must point at Graph instead of listing ``groups``."""
        return self.groups_overage or len(self.groups) > GROUPS_CLAIM_LIMIT


@dataclass
class DevTenant:
    """A directory (company): its GUID, verified domains, app registrations and users."""

    tenant_id: str
    display_name: str
    domains: list[str]
    clients: list[DevClient]
    users: list[DevUser]

    def find_client(self, client_id: str) -> DevClient | None:
        """The app registered in this tenant under ``client_id`` (app IDs are GUIDs: case-insensitive)."""
        wanted = client_id.lower()
        return next((c for c in self.clients if c.client_id.lower() == wanted), None)

    def find_user_by_oid(self, oid: str) -> DevUser | None:
        """The user with object ID ``oid``, as the directory holds it *now*."""
        return next((u for u in self.users if u.oid.lower() == oid.lower()), None)

    def accepts_post_logout_redirect_uri(self, uri: str) -> bool:
        """Whether any app of this tenant registered ``uri`` as a post-logout redirect URI."""
        return any(c.accepts_post_logout_redirect_uri(uri) for c in self.clients)


@dataclass
class DevIdpConfig:
    """Every tenant the development IdP serves."""

    tenants: list[DevTenant]

    def find_tenant(self, segment: str) -> DevTenant | None:
        """The tenant named by a path segment: its GUID or one of its verified domains."""
        wanted = segment.lower()
        for tenant in self.tenants:
            if tenant.tenant_id.lower() == wanted or wanted in (d.lower() for d in tenant.domains):
                return tenant
        return None

    def find_tenant_by_id(self, tenant_id: str) -> DevTenant | None:
        """The tenant whose GUID is ``tenant_id``."""
        return next((t for t in self.tenants if t.tenant_id.lower() == tenant_id.lower()), None)

    def find_client_anywhere(self, client_id: str) -> tuple[DevTenant, DevClient] | None:
        """The app with ``client_id`` in whichever tenant registered it (app IDs are globally unique)."""
        for tenant in self.tenants:
            client = tenant.find_client(client_id)
            if client is not None:
                return tenant, client
        return None

    def find_user_by_oid(self, oid: str) -> tuple[DevTenant, DevUser] | None:
        """The user with object ID ``oid`` in any tenant, and that tenant."""
        for tenant in self.tenants:
            user = tenant.find_user_by_oid(oid)
            if user is not None:
                return tenant, user
        return None

    def find_user(self, username: str) -> tuple[DevTenant, DevUser] | None:
        """The user signing in as ``username`` (UPNs are case-insensitive) and their home tenant."""
        wanted = username.lower()
        for tenant in self.tenants:
            for user in tenant.users:
                if user.username.lower() == wanted:
                    return tenant, user
        return None


def redirect_uri_matches(registered: str, requested: str) -> bool:
    """Entra's rule: exact, case-sensitive match, except that loopback ``http`` URIs may use any port."""
    if registered == requested:
        return True
    reg, req = urlsplit(registered), urlsplit(requested)
    if reg.scheme != "http" or req.scheme != "http" or reg.hostname not in _LOOPBACK_HOSTS:
        return False
    if "@" in req.netloc or not _has_valid_port(req):
        return False
    # Everything but the port must still match exactly.
    same_rest = (req.path, req.query, req.fragment) == (reg.path, reg.query, reg.fragment)
    return req.hostname == reg.hostname and same_rest


def _has_valid_port(parts: SplitResult) -> bool:
    try:
        parts.port  # noqa: B018 - reading .port is what validates it
    except ValueError:
        return False
    return True


def is_guid(value: str) -> bool:
    """Whether ``value`` is a GUID in the canonical 8-4-4-4-12 form Entra uses for IDs."""
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False

"""What every dev IdP handler needs, held on the app under one ``web.AppKey``, plus shared responses."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from devidp import errors
from devidp.client_assertion import SeenAssertions
from devidp.errors import AadstsError, ErrorContext
from devidp.keys import AppSigningKeys, SigningKey, SigningKeys
from devidp.model import MULTI_TENANT_SEGMENTS, DevClient, DevIdpConfig, DevTenant
from devidp.pages import error_page
from devidp.stats import Stats
from devidp.store import GrantStore

# Responses carrying codes, tokens or per-user pages must never be stored by a browser or proxy.
NO_STORE: Mapping[str, str] = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
# Entra's multi-tenant discovery names no issuer but a template the relying party fills with ``tid``.
ISSUER_TEMPLATE_TENANT = "{tenantid}"


@dataclass(frozen=True)
class Authority:
    """The tenant part of an endpoint path: one directory, or ``organizations``/``common`` (no tenant)."""

    segment: str
    tenant: DevTenant | None

    @property
    def is_multi_tenant(self) -> bool:
        """Whether any configured tenant's users may sign in here."""
        return self.tenant is None

    @property
    def base(self) -> str:
        """The segment advertised in URLs: the tenant GUID (even if the path named a domain), or the alias."""
        return self.tenant.tenant_id if self.tenant is not None else self.segment.lower()

    @property
    def name(self) -> str:
        """How errors name this directory."""
        return self.tenant.display_name if self.tenant is not None else self.segment.lower()


@dataclass(frozen=True)
class DevIdp:
    """The running dev IdP: its directory, authority URL, keys, grants, counters and clock."""

    config: DevIdpConfig
    public_url: str
    keys: SigningKeys
    store: GrantStore
    clock: Callable[[], float]
    app_keys: AppSigningKeys = field(default_factory=AppSigningKeys)
    assertions: SeenAssertions = field(default_factory=SeenAssertions)
    stats: Stats = field(default_factory=Stats)

    def issuer(self, tenant: DevTenant) -> str:
        """The tenant's issuer; always built from the GUID, even when the path named a domain."""
        return f"{self.public_url}/{tenant.tenant_id}/v2.0"

    def authority_issuer(self, authority: Authority) -> str:
        """Discovery's ``issuer``: the tenant's, or the ``{tenantid}`` template for multi-tenant aliases."""
        if authority.tenant is not None:
            return self.issuer(authority.tenant)
        return f"{self.public_url}/{ISSUER_TEMPLATE_TENANT}/v2.0"

    def endpoint(self, authority: Authority | DevTenant, path: str) -> str:
        """An absolute URL under the authority, derived from the configured origin, never the Host header."""
        base = authority.base if isinstance(authority, Authority) else authority.tenant_id
        return f"{self.public_url}/{base}/{path}"

    def error_context(self, request: web.Request) -> ErrorContext:
        """Fresh trace/correlation IDs and timestamp for an error answered to ``request``."""
        return ErrorContext.new(self.clock(), request.headers.get("client-request-id"))

    def authority_of(self, request: web.Request) -> Authority:
        """The tenant (or multi-tenant alias) named in the path, or AADSTS90002."""
        segment = request.match_info["tenant"]
        if segment.lower() in MULTI_TENANT_SEGMENTS:
            return Authority(segment, None)
        tenant = self.config.find_tenant(segment)
        if tenant is None:
            raise errors.tenant_not_found(segment)
        return Authority(segment, tenant)

    def find_client(self, authority: Authority, client_id: str) -> tuple[DevTenant, DevClient]:
        """The app and its home tenant; at a multi-tenant alias only ``multi_tenant`` apps exist (700016)."""
        if authority.tenant is not None:
            client = authority.tenant.find_client(client_id)
            if client is not None:
                return authority.tenant, client
        else:
            found = self.config.find_client_anywhere(client_id)
            if found is not None and found[1].multi_tenant:
                return found
        raise errors.client_not_found(client_id, authority.name)

    def id_token_key(self, client: DevClient) -> SigningKey:
        """The key this app's ID tokens are signed with: its own with claims mapping, else the current one."""
        if client.app_specific_keys:
            return self.app_keys.for_app(client.client_id, self.clock())
        return self.keys.current


DEVIDP = web.AppKey("devidp", DevIdp)


def json_response(body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON answer with Entra's content type."""
    return web.json_response(body, status=status, headers=headers, content_type="application/json")


def json_error(idp: DevIdp, request: web.Request, err: AadstsError) -> web.Response:
    """An error as Entra's token endpoint answers it: JSON with the AADSTS code and trace identifiers."""
    ctx = idp.error_context(request)
    return json_response(errors.json_body(err, ctx, idp.public_url), status=err.status, headers=NO_STORE)


def html_error(idp: DevIdp, request: web.Request, err: AadstsError) -> web.Response:
    """An error shown on the IdP itself, for when there is no trustworthy place to send the user back to."""
    ctx = idp.error_context(request)
    return web.Response(
        text=error_page(err, ctx), status=err.status, content_type="text/html", headers=NO_STORE
    )

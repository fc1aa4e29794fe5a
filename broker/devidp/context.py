"""What every dev IdP handler needs, held on the app under one ``web.AppKey``, plus shared responses."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from broker.devidp import errors
from broker.devidp.errors import AadstsError, ErrorContext
from broker.devidp.keys import SigningKeys
from broker.devidp.model import DevIdpConfig, DevTenant
from broker.devidp.pages import error_page
from broker.devidp.store import GrantStore

# Responses carrying codes, tokens or per-user pages must never be stored by a browser or proxy.
NO_STORE: Mapping[str, str] = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}


@dataclass(frozen=True)
class DevIdp:
    """The running dev IdP: its directory, authority URL, keys, grants and clock."""

    config: DevIdpConfig
    public_url: str
    keys: SigningKeys
    store: GrantStore
    clock: Callable[[], float]

    def issuer(self, tenant: DevTenant) -> str:
        """The tenant's issuer; always built from the GUID, even when the path named a domain."""
        return f"{self.public_url}/{tenant.tenant_id}/v2.0"

    def endpoint(self, tenant: DevTenant, path: str) -> str:
        """An absolute URL under the tenant, derived from the configured authority, never the Host header."""
        return f"{self.public_url}/{tenant.tenant_id}/{path}"

    def error_context(self, request: web.Request) -> ErrorContext:
        """Fresh trace/correlation IDs and timestamp for an error answered to ``request``."""
        return ErrorContext.new(self.clock(), request.headers.get("client-request-id"))

    def tenant_of(self, request: web.Request) -> DevTenant:
        """The tenant named in the path, or AADSTS90002."""
        segment = request.match_info["tenant"]
        tenant = self.config.find_tenant(segment)
        if tenant is None:
            raise errors.tenant_not_found(segment)
        return tenant


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

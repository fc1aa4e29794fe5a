"""Client authentication at the token endpoint: secret (post or basic) or certificate (private_key_jwt)."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from urllib.parse import unquote_plus

from aiohttp import web

from devidp import errors
from devidp.client_assertion import (
    JWT_BEARER,
    AssertionCheck,
    assertion_claim_invalid,
    assertion_issuer,
    verify_client_assertion,
)
from devidp.context import Authority, DevIdp
from devidp.failures import TOKEN_ERRORS
from devidp.model import DevClient, DevTenant

_MALFORMED_BASIC = "The Authorization header is not valid HTTP Basic credentials."


def basic_credentials(request: web.Request) -> tuple[str, str] | None:
    """HTTP Basic client credentials; RFC 6749 2.3.1 form-urlencodes the ID and secret before base64."""
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise errors.invalid_request(_MALFORMED_BASIC) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise errors.invalid_request(_MALFORMED_BASIC)
    return unquote_plus(client_id), unquote_plus(secret)


def authenticate_client(
    idp: DevIdp, request: web.Request, authority: Authority, params: Mapping[str, str]
) -> tuple[DevTenant, DevClient]:
    """The authenticated app and the tenant it is registered in, or the AADSTS error Entra would answer."""
    secret: str | None = None
    assertion = params.get("client_assertion")
    basic = basic_credentials(request)
    # RFC 6749 2.3: a client MUST NOT use more than one authentication method per request.
    if basic is not None:
        client_id, secret = basic
        if "client_secret" in params or assertion is not None:
            raise errors.invalid_request("Client credentials were sent both in the header and in the body.")
        if params.get("client_id", client_id) != client_id:
            raise errors.invalid_request("The client_id in the body differs from the one in the header.")
    elif assertion is not None:
        if "client_secret" in params:
            raise errors.invalid_request("Send either client_secret or client_assertion, not both.")
        client_id = _assertion_client_id(params, assertion)
    else:
        client_id = params.get("client_id") or ""
        if not client_id:
            raise errors.missing_parameter("client_id")
        secret = params.get("client_secret")

    home, client = idp.find_client(authority, client_id)
    if client.token_error is not None:
        # A configured failure: what Entra answers this app whatever it sends (expired secret, no consent...).
        raise TOKEN_ERRORS[client.token_error](client, home)
    if assertion is not None:
        # OIDC Core 9: the audience is the token endpoint URL, exactly as the client called it.
        check = AssertionCheck(client, f"{idp.public_url}{request.path}", idp.clock())
        verify_client_assertion(assertion, check, idp.assertions)
    elif secret is None:
        raise errors.missing_client_credential()
    # An app without a secret (certificate only) must not be unlocked by an empty client_secret.
    elif not client.has_secret or not hmac.compare_digest(secret.encode(), client.client_secret.encode()):
        raise errors.invalid_client_secret(client.client_id)
    return home, client


def _assertion_client_id(params: Mapping[str, str], assertion: str) -> str:
    assertion_type = params.get("client_assertion_type")
    if not assertion_type:
        raise errors.missing_parameter("client_assertion_type")
    if assertion_type != JWT_BEARER:
        raise errors.invalid_request(f"The client_assertion_type '{assertion_type}' is not supported.")
    issuer = assertion_issuer(assertion)
    client_id = params.get("client_id")
    if client_id and (issuer or "").lower() != client_id.lower():
        raise assertion_claim_invalid(
            f"Client assertion application identifier doesn't match 'client_id' parameter ('{client_id}')."
        )
    if not issuer:
        raise assertion_claim_invalid("The client assertion has no 'iss' claim naming the client.")
    return issuer

"""Validate an authorization request, deciding for each problem whether it may go back to the app."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from devidp import errors
from devidp.context import Authority, DevIdp
from devidp.errors import AadstsError
from devidp.model import DevClient

RESPONSE_MODES = ("query", "fragment", "form_post")
# RFC 7636 4.1/4.2: verifiers and S256 challenges are 43 to 128 characters.
_CHALLENGE_LENGTH = range(43, 129)


@dataclass(frozen=True)
class ReplyTarget:
    """Where and how an answer goes back to the app: its verified redirect URI, response mode and state."""

    redirect_uri: str
    response_mode: str
    state: str | None


class RedirectedError(Exception):
    """An error that is safe to send to the app, because its redirect URI has been verified."""

    def __init__(self, error: AadstsError, target: ReplyTarget) -> None:
        self.error = error
        self.target = target
        super().__init__(str(error))


@dataclass(frozen=True)
class AuthorizeRequest:
    """A fully validated authorization-code request with PKCE, at a tenant or a multi-tenant alias."""

    authority: Authority
    client: DevClient
    target: ReplyTarget
    state: str
    nonce: str
    scopes: tuple[str, ...]
    code_challenge: str
    prompt: str | None


def parse_authorize_request(idp: DevIdp, authority: Authority, params: Mapping[str, str]) -> AuthorizeRequest:
    """Check ``params``; raise AadstsError (show on the IdP) or RedirectedError (send to the app)."""
    client = _client(idp, authority, params)
    redirect_uri = params.get("redirect_uri")
    if not redirect_uri:
        raise errors.missing_parameter("redirect_uri")
    # Until the redirect URI is known to be registered, nothing may be sent to it (open redirector).
    if not client.accepts_redirect_uri(redirect_uri):
        raise errors.redirect_uri_not_registered(redirect_uri, client.client_id)
    state = params.get("state")
    mode = params.get("response_mode") or "query"
    if mode not in RESPONSE_MODES:
        target = ReplyTarget(redirect_uri, "query", state)
        raise RedirectedError(errors.invalid_request(f"Invalid response_mode '{mode}'."), target)
    target = ReplyTarget(redirect_uri, mode, state)
    try:
        return _parse_rest(authority, client, target, params)
    except AadstsError as exc:
        raise RedirectedError(exc, target) from None


def _client(idp: DevIdp, authority: Authority, params: Mapping[str, str]) -> DevClient:
    client_id = params.get("client_id")
    if not client_id:
        raise errors.missing_parameter("client_id")
    # At /organizations and /common only multi-tenant apps exist; others are AADSTS700016, shown here.
    return idp.find_client(authority, client_id)[1]


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise errors.missing_parameter(name)
    return value


def _parse_rest(
    authority: Authority, client: DevClient, target: ReplyTarget, params: Mapping[str, str]
) -> AuthorizeRequest:
    response_type = _required(params, "response_type")
    if response_type != "code":
        raise errors.unsupported_response_type(response_type)
    scopes = tuple(dict.fromkeys(_required(params, "scope").split()))
    if "openid" not in scopes:
        raise errors.scope_without_openid()
    state = _required(params, "state")
    nonce = _required(params, "nonce")
    # The broker is a confidential client, but PKCE (RFC 7636) still defends against code injection;
    # only S256 is accepted because "plain" gives no protection if the authorize request leaks.
    challenge = _required(params, "code_challenge")
    method = _required(params, "code_challenge_method")
    if method != "S256":
        raise errors.invalid_request(f"The code_challenge_method '{method}' is not supported; use 'S256'.")
    if len(challenge) not in _CHALLENGE_LENGTH:
        raise errors.invalid_code_challenge()
    return AuthorizeRequest(
        authority=authority,
        client=client,
        target=target,
        state=state,
        nonce=nonce,
        scopes=scopes,
        code_challenge=challenge,
        prompt=params.get("prompt"),
    )

"""Entra's error vocabulary: AADSTS codes, their messages, and the trace/correlation/timestamp suffix.

These are the *IdP's* errors (what it answers to clients), not the broker's own hierarchy in
``broker.errors``: the broker meets them only as ``IdentityProviderRejected`` after parsing the answer.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any


class AadstsError(Exception):
    """An Entra protocol error: OAuth ``error`` code, AADSTS number, message and HTTP status."""

    def __init__(self, error: str, code: int, message: str, status: int = 400) -> None:
        self.error = error
        self.code = code
        self.message = message
        self.status = status
        super().__init__(f"{error}: AADSTS{code}")


@dataclass(frozen=True)
class ErrorContext:
    """The identifiers Entra appends to every error so support can find the request in its logs."""

    trace_id: str
    correlation_id: str
    timestamp: str

    @classmethod
    def new(cls, now: float, client_request_id: str | None = None) -> ErrorContext:
        """A fresh trace ID; like Entra, a GUID ``client-request-id`` header becomes the correlation ID."""
        correlation = _guid_or_none(client_request_id) or str(uuid.uuid4())
        return cls(trace_id=str(uuid.uuid4()), correlation_id=correlation, timestamp=format_timestamp(now))


def format_timestamp(now: float) -> str:
    """A time as Entra writes it in errors: ``2024-05-01 12:34:56Z``."""
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(now))


def error_uri(public_url: str, code: int) -> str:
    """Where Entra points ``error_uri``: its own error-lookup page."""
    return f"{public_url}/error?code={code}"


def describe(err: AadstsError, ctx: ErrorContext) -> str:
    """The ``error_description`` text: ``AADSTSnnnn: message`` then trace, correlation and timestamp."""
    return (
        f"AADSTS{err.code}: {err.message}\r\nTrace ID: {ctx.trace_id}\r\n"
        f"Correlation ID: {ctx.correlation_id}\r\nTimestamp: {ctx.timestamp}"
    )


def json_body(err: AadstsError, ctx: ErrorContext, public_url: str) -> dict[str, Any]:
    """The JSON body of a token-endpoint (or discovery) error, in Entra's exact shape."""
    return {
        "error": err.error,
        "error_description": describe(err, ctx),
        "error_codes": [err.code],
        "timestamp": ctx.timestamp,
        "trace_id": ctx.trace_id,
        "correlation_id": ctx.correlation_id,
        "error_uri": error_uri(public_url, err.code),
    }


def redirect_fields(
    err: AadstsError, ctx: ErrorContext, public_url: str, state: str | None
) -> dict[str, str]:
    """The parameters of an authorize error sent back to the app's redirect URI."""
    fields = {
        "error": err.error,
        "error_description": describe(err, ctx),
        "error_uri": error_uri(public_url, err.code),
    }
    if state is not None:
        fields["state"] = state
    return fields


def _guid_or_none(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


# The catalogue. Messages follow Entra's wording so the broker's explanations can be tested against them.


def tenant_not_found(tenant: str) -> AadstsError:
    """AADSTS90002: the tenant in the path is neither a known GUID nor a verified domain."""
    return AadstsError(
        "invalid_tenant",
        90002,
        f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
        "into the correct cloud. Check with your subscription administrator, this may happen if there are "
        "no active subscriptions for the tenant.",
    )


def missing_parameter(name: str) -> AadstsError:
    """AADSTS900144: a required request parameter is absent."""
    return AadstsError(
        "invalid_request", 900144, f"The request body must contain the following parameter: '{name}'."
    )


def invalid_request(message: str) -> AadstsError:
    """AADSTS90023: a request Entra cannot make sense of."""
    return AadstsError("invalid_request", 90023, message)


def client_not_found(client_id: str, tenant_name: str) -> AadstsError:
    """AADSTS700016: no app with this ID is registered in the tenant."""
    return AadstsError(
        "unauthorized_client",
        700016,
        f"Application with identifier '{client_id}' was not found in the directory '{tenant_name}'. This can "
        "happen if the application has not been installed by the administrator of the tenant or consented "
        "to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
    )


def redirect_uri_not_registered(redirect_uri: str, client_id: str) -> AadstsError:
    """AADSTS50011: the redirect URI is not one of the app's registered reply URLs."""
    return AadstsError(
        "invalid_request",
        50011,
        f"The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs "
        f"configured for the application '{client_id}'. Make sure the redirect URI sent in the request "
        "matches one added to your application in the Azure portal. Navigate to "
        "https://aka.ms/redirectUriMismatchError to learn more about how to fix this.",
    )


def user_from_other_tenant(username: str, home_issuer: str, tenant_name: str, client_id: str) -> AadstsError:
    """AADSTS50020: the account belongs to another directory (the "wrong company login" case)."""
    return AadstsError(
        "invalid_request",
        50020,
        f"User account '{username}' from identity provider '{home_issuer}' does not exist in tenant "
        f"'{tenant_name}' and cannot access the application '{client_id}' in that tenant. The account needs "
        "to be added as an external user in the tenant first. Sign out and sign in again with a different "
        "Azure Active Directory user account.",
    )


def user_not_found(username: str, tenant_name: str) -> AadstsError:
    """AADSTS50034: no account with this username exists anywhere."""
    return AadstsError(
        "invalid_grant",
        50034,
        f"The user account {username} does not exist in the {tenant_name} directory. To sign into this "
        "application, the account must be added to the directory.",
    )


def user_cancelled() -> AadstsError:
    """AADSTS65004: the user chose not to sign in."""
    return AadstsError("access_denied", 65004, "User declined to consent to access the app.")


def login_required() -> AadstsError:
    """AADSTS50058: ``prompt=none`` but the dev IdP keeps no sign-in session of its own."""
    return AadstsError(
        "login_required",
        50058,
        "A silent sign-in request was sent but no user is signed in. The cookies used to represent the "
        "user's session were not sent in the request to Azure AD.",
    )


def invalid_client_secret(client_id: str) -> AadstsError:
    """AADSTS7000215: the secret is wrong (often the secret's ID was sent instead of its value)."""
    return AadstsError(
        "invalid_client",
        7000215,
        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
        f"value, not the client secret ID, for a secret added to app '{client_id}'.",
        status=401,
    )


def missing_client_credential() -> AadstsError:
    """AADSTS7000218: a confidential client sent neither a secret nor an assertion."""
    return AadstsError(
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        status=401,
    )


def code_already_redeemed() -> AadstsError:
    """AADSTS54005: authorization codes are single-use."""
    return AadstsError(
        "invalid_grant",
        54005,
        "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an "
        "existing refresh token.",
    )


def code_expired() -> AadstsError:
    """AADSTS70008: the code is unknown or older than its ten-minute life."""
    return AadstsError(
        "invalid_grant",
        70008,
        "The provided authorization code or refresh token has expired due to inactivity. Send a new "
        "interactive authorization request for this user and resource.",
    )


def code_verifier_mismatch() -> AadstsError:
    """AADSTS501481: the PKCE verifier does not hash to the challenge sent at authorize."""
    return AadstsError(
        "invalid_grant",
        501481,
        "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
    )


def reply_address_mismatch(given: str, expected: str) -> AadstsError:
    """AADSTS500112: the token request's redirect_uri differs from the authorize request's."""
    return AadstsError(
        "invalid_grant",
        500112,
        f"The reply address '{given}' does not match the reply address '{expected}' provided when requesting "
        "Authorization code.",
    )


def grant_invalid() -> AadstsError:
    """AADSTS70000: the code or refresh token is unknown or was issued to another app or tenant."""
    return AadstsError("invalid_grant", 70000, "Provided grant is invalid or malformed.")


def refresh_token_expired(issued: str, lifetime: str) -> AadstsError:
    """AADSTS700082: the refresh token outlived its inactivity window; the user must sign in again."""
    return AadstsError(
        "invalid_grant",
        700082,
        f"The refresh token has expired due to inactivity. The token was issued on {issued} and was "
        f"inactive for {lifetime}.",
    )


def unsupported_grant_type(grant_type: str) -> AadstsError:
    """AADSTS70003: only authorization_code and refresh_token are implemented."""
    return AadstsError(
        "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant_type}'."
    )


def unsupported_response_type(response_type: str) -> AadstsError:
    """AADSTS700054: the dev IdP (like a Web app registration without implicit grant) only issues codes."""
    return AadstsError(
        "unsupported_response_type",
        700054,
        f"response_type '{response_type}' is not enabled for the application.",
    )


def scope_without_openid() -> AadstsError:
    """AADSTS70011: an OpenID Connect sign-in needs the ``openid`` scope."""
    return AadstsError(
        "invalid_scope",
        70011,
        "The provided request must include a 'openid' scope input parameter. The provided value for the "
        "input parameter 'scope' is not valid.",
    )


def invalid_code_challenge() -> AadstsError:
    """AADSTS501491: RFC 7636 4.2 requires 43 to 128 characters."""
    return AadstsError("invalid_request", 501491, "Invalid size of Code_Challenge parameter.")


def server_error() -> AadstsError:
    """AADSTS90033: something broke inside the IdP; details stay in its log."""
    return AadstsError(
        "temporarily_unavailable", 90033, "A transient error has occurred. Please try again.", 500
    )

"""Failures the dev IdP produces on demand: broken ID tokens, authorize errors and token-endpoint errors.

Each is named in the YAML (or set on the dataclasses, or at runtime through ``/_devidp/users/{oid}``) so
the gateway can be tested against every way Entra says no. The catalogues here are the single source of
the accepted values: the loader and the control endpoint validate against them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from devidp.errors import AadstsError, client_not_found, invalid_client_secret
from devidp.model import DevClient, DevIdpConfig, DevTenant, DevUser

# What an ID token may be broken by, each the way an attacker or a misconfiguration would break it.
TOKEN_FAULTS: tuple[str, ...] = (
    "wrong_aud",  # aud is some other app's GUID
    "wrong_iss",  # iss names a made-up tenant
    "other_tid",  # tid and iss of another configured tenant, validly signed
    "expired",  # exp an hour ago
    "not_yet_valid",  # nbf an hour ahead
    "bad_signature",  # last signature byte flipped
    "unknown_kid",  # signed by an unpublished key
    "alg_none",  # unsigned (RFC 7519 6: "none")
    "hs256_public_key",  # HMAC keyed with the published RSA public key (algorithm confusion)
    "missing_oid",  # no oid: the stable user key is absent
    "nonce_mismatch",  # nonce of some other login
    "far_future_exp",  # exp of 10^12: a session that would never come due for a refresh
    "infinite_exp",  # exp written as the JSON literal Infinity (validly signed)
    "extra_aud_no_azp",  # aud lists us and another app, with no azp (OIDC Core 3.1.3.7 item 4)
    "foreign_azp",  # azp names another app (item 5)
)


def _app_name(client: DevClient) -> str:
    return client.display_name or client.client_id


def user_not_assigned(client: DevClient, user: DevUser) -> AadstsError:
    """AADSTS50105: the app requires assignment and the user has none."""
    return AadstsError(
        "access_denied",
        50105,
        f"Your administrator has configured the application {_app_name(client)} ('{client.client_id}') to "
        "block users unless they are specifically granted ('assigned') access to the application. The "
        f"signed in user '{user.username}' is blocked because they are not a direct member of a group with "
        "access, nor had access directly assigned by an administrator. Please contact your administrator "
        "to assign access to this application.",
    )


def consent_missing(error: str, client: DevClient) -> AadstsError:
    """AADSTS65001: nobody consented to the app's permissions in this tenant."""
    return AadstsError(
        error,
        65001,
        "The user or administrator has not consented to use the application with ID "
        f"'{client.client_id}' named '{_app_name(client)}'. Send an interactive authorization request for "
        "this user and resource.",
    )


def blocked_by_conditional_access(error: str) -> AadstsError:
    """AADSTS53003: a Conditional Access policy blocks this sign-in."""
    return AadstsError(
        error,
        53003,
        "Access has been blocked by Conditional Access policies. The access policy does not allow token "
        "issuance.",
    )


def mfa_required(client: DevClient) -> AadstsError:
    """AADSTS50076: multi-factor authentication is required (new location or policy change)."""
    return AadstsError(
        "interaction_required",
        50076,
        "Due to a configuration change made by your administrator, or because you moved to a new location, "
        f"you must use multi-factor authentication to access '{client.client_id}'.",
    )


def secret_expired(client: DevClient) -> AadstsError:
    """AADSTS7000222: the client secret's lifetime is over."""
    return AadstsError(
        "invalid_client",
        7000222,
        f"The provided client secret keys for app '{client.client_id}' are expired. Visit the Azure portal "
        "to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate "
        "credentials for added security: https://aka.ms/certCreds.",
        status=401,
    )


# Sent to the redirect URI instead of a code when a user with ``authorize_error`` is picked.
AUTHORIZE_ERRORS: Mapping[int, Callable[[DevClient, DevUser], AadstsError]] = {
    50105: user_not_assigned,
    65001: lambda client, _user: consent_missing("consent_required", client),
    53003: lambda _client, _user: blocked_by_conditional_access("access_denied"),
    50076: lambda client, _user: mfa_required(client),
}

# Answered to every token request of an app with ``token_error``.
TOKEN_ERRORS: Mapping[int, Callable[[DevClient, DevTenant], AadstsError]] = {
    7000215: lambda client, _tenant: invalid_client_secret(client.client_id),
    7000222: lambda client, _tenant: secret_expired(client),
    65001: lambda client, _tenant: consent_missing("invalid_grant", client),
    53003: lambda _client, _tenant: blocked_by_conditional_access("invalid_grant"),
    700016: lambda client, tenant: client_not_found(client.client_id, tenant.display_name),
}


def token_fault_problem(value: object) -> str | None:
    """Why ``value`` is not a valid ``token_fault`` (``None`` is valid: no fault)."""
    if value is None or value in TOKEN_FAULTS:
        return None
    return f"must be one of {', '.join(TOKEN_FAULTS)}, got {value!r}"


def code_problem(value: object, catalogue: Mapping[int, object]) -> str | None:
    """Why ``value`` is not one of the AADSTS codes in ``catalogue`` (``None`` is valid: no error)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value in catalogue):
        return None
    return f"must be one of {', '.join(str(c) for c in catalogue)}, got {value!r}"


def configuration_problems(config: DevIdpConfig) -> list[str]:
    """Invalid failure settings in a directory built in code (the YAML loader reports its own with lines)."""
    problems: list[str] = []
    for tenant in config.tenants:
        for client in tenant.clients:
            if (why := code_problem(client.token_error, TOKEN_ERRORS)) is not None:
                problems.append(f"client {client.client_id}: token_error {why}")
            if not client.has_secret and not client.certificate_pem:
                problems.append(f"client {client.client_id}: needs a client_secret or a certificate_pem")
        for user in tenant.users:
            if (why := token_fault_problem(user.token_fault)) is not None:
                problems.append(f"user {user.oid}: token_fault {why}")
            if (why := code_problem(user.authorize_error, AUTHORIZE_ERRORS)) is not None:
                problems.append(f"user {user.oid}: authorize_error {why}")
    return problems

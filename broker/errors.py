"""The broker's one exception hierarchy.

Third-party exceptions (aiohttp, redis, pyjwt, yaml) are translated into these exactly where they enter,
so handlers only ever deal with our types and every error a user can see maps to a clear page or JSON body::

    BrokerError
    ├── ConfigError                 bad YAML / schema; carries every problem found, each with file:line
    ├── MissingEnvironmentVariable  a ``${VAR}`` of the config is unset (collected as a ConfigProblem)
    ├── SessionStoreUnavailable     Redis (or another store) cannot be reached -> 503
    ├── IdentityProviderError       the IdP failed or answered with an OAuth/AADSTS error
    │   ├── IdentityProviderUnavailable   network failure, timeout, 5xx -> 503
    │   ├── IdentityProviderRejected      an OAuth error answer (``error``, AADSTS code) -> explained page
    │   ├── GroupsOverageError            Graph could not list a user's groups -> the sign-in is refused
    │   └── SessionEnded                  the IdP ended the session at a refresh (``invalid_grant``)
    ├── InvalidToken                an ID token failed validation (which rule, never the token itself)
    ├── SignInRefused               a verified user the company's rules keep out (``identity/sign_in.py``)
    │   ├── GroupsOverageRefused          too many groups for the token and ``groups_overage: deny``
    │   ├── NoRoleAssigned                ``roles.require_role`` and the user has none
    │   └── UserChanged                   a refreshed ID token names another user than the session's
    ├── RequestBodyTooLarge         a chunked request body outgrew the route's ``max_body`` -> 413
    └── UpstreamError               the upstream HTTP/1.1 client (``proxy/http1``) failed
        ├── UpstreamUnreachable           refused, reset, DNS, or the connection dropped -> 502
        ├── UpstreamTlsError              the upstream's certificate or TLS handshake failed -> 502
        ├── UpstreamTimeout               connect (with the wait for a pooled connection) or a read -> 504
        ├── UpstreamProtocolError         an answer llhttp cannot parse, or a head over its bounds -> 502
        └── UnsendableHeader              a request header that could split the request: never sent -> 500
"""

from __future__ import annotations

from dataclasses import dataclass


class BrokerError(Exception):
    """Base class of every error the broker raises on purpose."""


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a config file, located so an operator can jump to it."""

    file: str
    line: int | None
    key_path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        parts = [part for part in (where, self.key_path, self.message) if part]
        return ": ".join(parts)


class ConfigError(BrokerError):
    """The configuration is unusable; ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class MissingEnvironmentVariable(BrokerError):
    """A ``${VAR}`` reference names a variable that is not set and has no default."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)

    def __str__(self) -> str:
        return f"environment variable {self.name} is not set"


class SessionStoreUnavailable(BrokerError):
    """The session store cannot be reached; requests that need a session get a 503."""


class IdentityProviderError(BrokerError):
    """Something went wrong talking to the identity provider."""


class IdentityProviderUnavailable(IdentityProviderError):
    """The identity provider could not be reached, timed out or answered 5xx."""


class IdentityProviderRejected(IdentityProviderError):
    """The identity provider answered with an OAuth error (``error``, ``error_description``, AADSTS code)."""

    def __init__(
        self,
        error: str,
        description: str = "",
        error_codes: tuple[int, ...] = (),
        correlation_id: str = "",
    ) -> None:
        self.error = error
        self.description = description
        self.error_codes = error_codes
        self.correlation_id = correlation_id
        super().__init__(f"{error}: {description}" if description else error)


class InvalidToken(BrokerError):
    """An ID token failed validation; the message names the rule it broke, never the token."""


class GroupsOverageError(IdentityProviderError):
    """Graph could not tell us the user's groups (the login must not continue without them)."""


class SessionEnded(IdentityProviderError):
    """The identity provider says this session is over (``invalid_grant`` or the user changed)."""


class SignInRefused(BrokerError):
    """The IdP vouched for the user, but this company's rules refuse the sign-in (or end the session)."""


class GroupsOverageRefused(SignInRefused):
    """The user is in more groups than a token carries, and the company does not look them up in Graph."""


class NoRoleAssigned(SignInRefused):
    """``roles.require_role`` is set and the user has no broker role; ``user_key`` is for the audit line."""

    def __init__(self, user_key: str) -> None:
        self.user_key = user_key
        super().__init__("no role assigned")


class UserChanged(SignInRefused):
    """A refreshed ID token names another user than the session's: a refresh never switches the user."""


class RequestBodyTooLarge(BrokerError):
    """A chunked request body grew past the route's ``max_body`` while it was being forwarded."""


class UpstreamError(BrokerError):
    """The upstream HTTP/1.1 client failed (``proxy/forward.failure_for`` says what the user sees)."""


class UpstreamUnreachable(UpstreamError):
    """The upstream could not be reached (refused, reset, DNS), or dropped the connection before its answer
    ended. ``connecting``: it failed while connecting (its text names host, port and the OS error)."""

    def __init__(self, message: str, *, connecting: bool = False) -> None:
        self.connecting = connecting
        super().__init__(message)


class UpstreamTlsError(UpstreamError):
    """The TLS handshake with the upstream failed: its certificate is not trusted, or it refused ours."""


class UpstreamTimeout(UpstreamError):
    """Connecting (including the wait for a free pooled connection) or one read took too long."""


class UpstreamProtocolError(UpstreamError):
    """The upstream's answer cannot be parsed, or its head passes the bounds the gateway keeps."""


class UnsendableHeader(UpstreamError):
    """A request header whose name is no token, or whose value holds CR, LF or NUL: nothing is sent."""

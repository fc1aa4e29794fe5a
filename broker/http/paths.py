"""Every path the gateway answers itself: the reserved ``/.auth/`` namespace, never proxied. Pure.

The handlers' routes (``broker/app.py``), the links they build, the pages' forms (the templates read these
through the ``paths`` global), the Entra guide's redirect URIs and the config check that keeps route
aliases out of the namespace all take the spelling from here.
"""

from __future__ import annotations

from urllib.parse import urlencode

AUTH_PREFIX = "/.auth/"
LOGIN = "/.auth/login"
CALLBACK = "/.auth/callback"
LOGOUT = "/.auth/logout"
LOGGED_OUT = "/.auth/logout/done"
FRONTCHANNEL_LOGOUT = "/.auth/frontchannel-logout"
JWKS = "/.auth/jwks.json"
WELL_KNOWN_JWKS = "/.well-known/jwks.json"
ME = "/.auth/me"
HEALTHZ = "/.auth/healthz"
READYZ = "/.auth/readyz"
# Forward-auth: an ingress asks here whether a request may pass (Envoy appends the original path).
VERIFY = "/.auth/verify"


def company_login(code: str) -> str:
    """A company's login page."""
    return f"{LOGIN}/{code}"


def company_login_start(code: str) -> str:
    """Where a company's login page's button leads: remember the login, then go to Entra."""
    return f"{LOGIN}/{code}/start"


def company_frontchannel_logout(code: str) -> str:
    """Entra's front-channel logout URL for one company."""
    return f"{FRONTCHANNEL_LOGOUT}/{code}"


def with_return_to(path: str, rd: str) -> str:
    """``path`` keeping the return path ``rd`` (left out when it is the default ``/``)."""
    return path + (f"?{urlencode({'rd': rd})}" if rd != "/" else "")

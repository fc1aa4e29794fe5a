"""An Entra-shaped OpenID provider for the demo and the tests (Entra itself is unreachable from here).

It reproduces the protocol facts in ``docs``/ENTRA.md: tenant-specific and multi-tenant
(``organizations``/``common``) discovery and keys, authorization code + PKCE (S256) with
``query``/``fragment``/``form_post`` response modes, client secrets (post or basic) and certificates
(``private_key_jwt``), single-use codes, rotating refresh tokens, pairwise ``sub``, group overage with a
small Graph emulation, app-specific signing keys, and Entra's AADSTS error shapes.

For testing a relying party it also fails on demand (``devidp.failures``): broken ID tokens,
authorize and token-endpoint errors, set per user or app in the YAML or at runtime through the test-only
``/_devidp/`` endpoints (``devidp.control``), which also rotate keys and count requests.
"""

from __future__ import annotations

from devidp.app import create_devidp_app
from devidp.failures import AUTHORIZE_ERRORS, TOKEN_ERRORS, TOKEN_FAULTS
from devidp.keys import SigningKey, SigningKeys
from devidp.loader import DevIdpConfigError, load_devidp_config
from devidp.model import DevApi, DevClient, DevIdpConfig, DevTenant, DevUser

__all__ = [
    "AUTHORIZE_ERRORS",
    "TOKEN_ERRORS",
    "TOKEN_FAULTS",
    "DevApi",
    "DevClient",
    "DevIdpConfig",
    "DevIdpConfigError",
    "DevTenant",
    "DevUser",
    "SigningKey",
    "SigningKeys",
    "create_devidp_app",
    "load_devidp_config",
]

"""An Entra-shaped OpenID provider for the demo and the tests (Entra itself is unreachable from here).

It reproduces the protocol facts in ``docs``/ENTRA.md: tenant-specific discovery and keys, authorization
code + PKCE (S256) with ``query``/``fragment``/``form_post`` response modes, client secrets (post or basic),
single-use codes, rotating refresh tokens, pairwise ``sub``, and Entra's AADSTS error shapes.
"""

from __future__ import annotations

from broker.devidp.app import create_devidp_app
from broker.devidp.keys import SigningKey, SigningKeys
from broker.devidp.loader import DevIdpConfigError, load_devidp_config
from broker.devidp.model import DevClient, DevIdpConfig, DevTenant, DevUser

__all__ = [
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

"""Entra Broker: an identity-aware reverse proxy that signs users in with Microsoft Entra ID per company."""

__version__ = "0.1.0"

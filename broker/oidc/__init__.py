"""OpenID Connect against Entra ID: discovery and keys, the client side of the code flow, token checks."""

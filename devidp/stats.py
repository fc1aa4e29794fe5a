"""Counters of what clients asked the dev IdP for, so tests can assert how often the gateway fetched."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Grant types counted separately: the gateway's tests care about logins versus refreshes.
COUNTED_GRANTS = ("authorization_code", "refresh_token")


@dataclass
class Stats:
    """Requests since start; every request counts, answered or refused (a refused refresh is a refresh)."""

    discovery: int = 0
    jwks: int = 0
    graph: int = 0
    token: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTED_GRANTS, 0))

    def count_grant(self, grant_type: str) -> None:
        """Count one token request for ``grant_type`` (other grant types are not counted)."""
        if grant_type in self.token:
            self.token[grant_type] += 1

    def as_json(self) -> dict[str, Any]:
        """The counters in the shape ``GET /_devidp/stats`` answers."""
        return {
            "discovery": self.discovery,
            "jwks": self.jwks,
            "token": dict(self.token),
            "graph": self.graph,
        }

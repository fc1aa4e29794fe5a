"""The headers that carry the user's identity upstream on one route: the signed assertion plus the route's
plain identity headers (header expressions over kept claims: ``claim_mapping.py``).

Built once per assertion: the signer hands out the same assertion for a session and audience until a third
of its lifetime is left, and everything else in these headers is derived from the same session state (a
refresh that changes a name or a role yields a new assertion, hence a new entry). Busy sessions therefore
cost a dictionary lookup here, not a claims dictionary and a header table per request.
"""

from __future__ import annotations

from collections.abc import Mapping

from broker.identity.assertion import AssertionSigner
from broker.identity.claim_mapping import HeaderMaps
from broker.ops.caches import SweepSchedule, sweep
from broker.proxy.routing import Route
from broker.sessions.model import Session

DEFAULT_MAX_ENTRIES = 50_000


class IdentityHeaders:
    """Identity headers per (assertion, route), for one config generation (routes change at reload)."""

    def __init__(
        self,
        signer: AssertionSigner,
        assertion_header: str,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        maps: HeaderMaps | None = None,
    ) -> None:
        self.signer = signer
        self._maps = maps
        self._assertion_header = assertion_header
        self._built: dict[tuple[str, int], tuple[Mapping[str, str], float]] = {}
        self._sweeps = SweepSchedule(max_entries)

    def for_request(self, session: Session, route: Route, host: str, now: float) -> Mapping[str, str]:
        """The headers to add to this request to ``route`` on ``host`` (a shared, read-only mapping)."""
        extra = tuple(route.config.assertion_claims)
        assertion = self.signer.sign(session, route.audience(host), now, extra)
        key = (assertion, route.index)
        entry = self._built.get(key)
        if entry is None:
            entry = (self._build(session, route, assertion), now + self.signer.ttl)
            if self._sweeps.due(len(self._built), now):
                sweep(self._built, lambda built: built[1], now, self._sweeps.max_entries)
            self._built[key] = entry
        return entry[0]

    def _build(self, session: Session, route: Route, assertion: str) -> Mapping[str, str]:
        maps = self._maps if self._maps is not None else HeaderMaps.for_route(route.index, route.config)
        return {self._assertion_header: assertion, **maps.headers(route.index, session)}

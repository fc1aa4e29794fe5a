"""Which ID-token claims a session keeps (a company's ``keep_claims``), bounded so a session stays small.

Called at sign-in and at every refresh alike, so a claim changed at Entra is seen after the next refresh.
A Redis session record must stay under 4 KB (``bench/session_size.py``): each kept string is cut at
``MAX_CLAIM_CHARS``, a list at ``MAX_CLAIM_ITEMS`` strings, and claims past ``MAX_KEPT_BYTES`` of JSON are
dropped (in the order the company lists them: the first ones are the ones it needs most).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from broker.config.formats import claim_kept

MAX_CLAIM_CHARS = 256
MAX_CLAIM_ITEMS = 32
MAX_KEPT_BYTES = 768  # bench/session_size.py --kept-claims: a full budget keeps a session under 4 KB in Redis


def _bounded(value: Any) -> Any:
    """A claim value cut to size; None for shapes no header or rule can use (objects)."""
    if isinstance(value, str):
        return value[:MAX_CLAIM_CHARS]
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, list):
        return [v[:MAX_CLAIM_CHARS] for v in value if isinstance(v, str)][:MAX_CLAIM_ITEMS]
    return None


def kept_claims(keep: Sequence[str], claims: Mapping[str, Any]) -> dict[str, Any]:
    """The claims to seal with the session: those ``keep`` names, each bounded, within the byte budget."""
    kept: dict[str, Any] = {}
    used = 2
    for name, value in claims.items():
        if not claim_kept(name, keep):
            continue
        bounded = _bounded(value)
        if bounded is None:
            continue
        size = len(json.dumps({name: bounded}, separators=(",", ":")).encode())
        if used + size > MAX_KEPT_BYTES:
            continue
        kept[name] = bounded
        used += size
    return kept

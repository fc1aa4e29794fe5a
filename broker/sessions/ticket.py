"""The session ticket, the cookie's value ``v1.{id}.{key}``: written and parsed here, and nowhere else. Pure.

The ``id`` names the stored record (hashed before it reaches the store); the ``key`` opens it. Versioned so
the format can change without breaking existing cookies.
"""

from __future__ import annotations

from broker.sessions.sealing import SealKey

TICKET_VERSION = "v1"
# Far longer than any ticket issued: anything longer is junk, refused before it is decoded.
MAX_TICKET_LENGTH = 200


def format_ticket(key: SealKey) -> str:
    """``v1.{id}.{key}``: versioned so the format can change without breaking existing cookies."""
    return f"{TICKET_VERSION}.{key}"


def parse_ticket(text: str) -> SealKey | None:
    """The seal key in a cookie value; None for anything that is not a well-formed v1 ticket."""
    version, _, rest = text.partition(".")
    if version != TICKET_VERSION or len(text) > MAX_TICKET_LENGTH:
        return None
    return SealKey.parse(rest)

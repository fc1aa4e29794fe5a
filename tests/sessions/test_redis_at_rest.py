"""What a Redis dump reveals: ciphertext under hashed keys, no token, no claim, no working ticket."""

from __future__ import annotations

import redis.asyncio as redis

from broker.sessions.manager import SESSION_PREFIX, parse_ticket
from broker.sessions.model import Session
from broker.sessions.redis_store import KEY_PREFIX
from tests.support.stack import ADELE, Stack


async def test_redis_holds_no_plaintext_token_or_claim(redis_stack: Stack) -> None:
    async with redis_stack.browser() as browser:
        await redis_stack.login(browser, "contoso", ADELE.username)
        ticket = next(c.value for c in browser.cookie_jar if c.key == "broker")

    client = redis.Redis.from_url(redis_stack.store_url)
    try:
        raw = {key: await client.get(key) for key in await client.keys(f"{KEY_PREFIX}*")}
    finally:
        await client.aclose()

    # With the ticket (which only the browser holds) the record decrypts to a session with real tokens ...
    seal = parse_ticket(ticket)
    assert seal is not None
    blob = raw[f"{KEY_PREFIX}{SESSION_PREFIX}{seal.storage_id()}".encode()]
    assert blob is not None
    plain = seal.open(blob)
    assert plain is not None
    session = Session.from_json(plain)
    assert session is not None and session.id_token.count(".") == 2 and session.refresh_token

    # ... but nothing stored in Redis contains them, nor the user's identity, nor the ticket's parts.
    secrets_to_hide = [
        session.id_token,
        session.refresh_token,
        session.id_token.split(".")[1],
        ADELE.oid,
        ADELE.username,
        ticket,
        ticket.split(".")[1],
        ticket.split(".")[2],
    ]
    everything = b"".join(k + (v or b"") for k, v in raw.items())
    for secret in secrets_to_hide:
        assert secret.encode() not in everything
    assert b"eyJ" not in everything  # no JWT fragment of any kind

"""What a Redis dump reveals: ciphertext under hashed keys, no token, no claim, no working ticket."""

from __future__ import annotations

import redis.asyncio as redis

from broker.sessions.manager import SESSION_PREFIX, unpack_session
from broker.sessions.redis_store import KEY_PREFIX
from broker.sessions.ticket import parse_ticket
from tests.support.stack import ADELE, CONTOSO_TID, Stack


async def test_redis_holds_no_plaintext_token_or_claim(redis_stack: Stack) -> None:
    async with redis_stack.browser() as browser:
        await redis_stack.login(browser, "contoso", ADELE.username)
        ticket = next(c.value for c in browser.cookie_jar if c.key == "broker")

    client = redis.Redis.from_url(redis_stack.store_url)
    raw: dict[bytes, bytes | None] = {}
    try:
        # Everything a dump would show: strings (sessions, meta), hashes (indexes) and the sorted set of
        # pending logins (hashed state ids), names and values.
        for key in await client.keys(f"{KEY_PREFIX}*"):
            kind = await client.type(key)
            if kind == b"hash":
                raw[key] = b"".join(k + v for k, v in (await client.hgetall(key)).items())
            elif kind == b"zset":
                raw[key] = b"".join(await client.zrange(key, 0, -1))
            else:
                raw[key] = await client.get(key)
    finally:
        await client.aclose()
    assert any(b":ix:user:" in k for k in raw) and any(b":ix:sid:" in k for k in raw)

    # With the ticket (which only the browser holds) the record decrypts to a session with the real refresh
    # token and identity (the ID token itself is not kept) ...
    parsed = parse_ticket(ticket)
    assert parsed is not None
    seal = parsed.with_server(redis_stack.session_keys())
    blob = raw[f"{KEY_PREFIX}{SESSION_PREFIX}{seal.storage_id()}".encode()]
    assert blob is not None
    plain = seal.open(blob)
    assert plain is not None
    session = unpack_session(plain)
    assert session is not None and session.refresh_token and session.oid == ADELE.oid

    # ... but nothing stored in Redis contains them, nor the user's identity, nor the ticket's parts.
    secrets_to_hide = [
        session.refresh_token,
        ADELE.oid,
        ADELE.name,
        CONTOSO_TID,
        str(session.sid),
        ADELE.username,
        ticket,
        ticket.split(".")[1],
        ticket.split(".")[2],
    ]
    everything = b"".join(k + (v or b"") for k, v in raw.items())
    for secret in secrets_to_hide:
        assert secret.encode() not in everything
    assert b"eyJ" not in everything  # no JWT fragment of any kind

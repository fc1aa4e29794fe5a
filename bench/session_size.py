"""How much Redis memory one session takes, with Entra-sized tokens.

Builds a session like a real Entra sign-in produces (refresh token ~1.5 KB, login_hint, 5 groups, 2 roles;
the ID token's claims, not the token, which the broker does not keep), stores it through the broker's own
SessionManager in a throw-away redis-server on a free loopback port, and prints the bytes of each key it
writes (``MEMORY USAGE``) and the total; then the ``used_memory`` each further session adds.

    .venv/bin/python bench/session_size.py [--kept-claims]

``--kept-claims``: the session also keeps claims up to the whole kept-claims budget (``keep_claims``,
``broker/identity/claim_keeping.py``), the largest a session with kept claims can be.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import redis.asyncio as redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from broker.identity.claim_keeping import kept_claims  # noqa: E402
from broker.sessions.manager import SessionManager  # noqa: E402
from broker.sessions.model import Session  # noqa: E402
from broker.sessions.redis_store import RedisStore  # noqa: E402
from broker.sessions.sealing import ServerKeys  # noqa: E402
from tests.support.servers import redis_server  # noqa: E402


def entra_sized_session() -> Session:
    tid, oid = "3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c", "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
    return Session(
        login_code="contoso",
        tid=tid,
        oid=oid,
        name="Adele Vance",
        preferred_username="adele.vance@contoso.onmicrosoft.com",
        email="adele.vance@contoso.com",
        role="admin",
        roles=["writer", "admin"],
        groups=[f"{i:08x}-0000-4000-8000-{secrets.token_hex(6)}" for i in range(5)],
        sid="0031a0d7-7bd5-2cbf-1a3b-5d5a8f4c2e11",
        login_hint="O.CiQ" + secrets.token_urlsafe(90),
        refresh_token="0.A" + secrets.token_urlsafe(1120),  # Entra refresh tokens are opaque, ~1.5 KB
        id_token_expires_at=time.time() + 3600,
        csrf=secrets.token_urlsafe(24),
        claims=full_kept_claims() if "--kept-claims" in sys.argv else {},
    )


def full_kept_claims() -> dict[str, object]:
    """Claims as a company keeping many would have them, cut to the kept-claims budget as sign-in does."""
    claims = {
        "upn": "adele.vance@contoso.com",
        "onpremisessamaccountname": "adele.vance",
        "employeeid": "E10042",
        "ctry": "FR",
        **{f"extn.attribute{n}": secrets.token_hex(40) for n in range(20)},
    }
    return kept_claims(["upn", "onpremisessamaccountname", "employeeid", "ctry", "extn.*"], claims)


async def measure(url: str) -> None:
    store = RedisStore(url)
    manager = SessionManager(store, 8 * 3600, 24 * 3600, keys=ServerKeys.random())
    session = entra_sized_session()
    print(
        f"refresh token {len(session.refresh_token or '')} B, login_hint {len(session.login_hint or '')} B, "
        f"session JSON {len(session.to_json())} B (the ID token's claims are kept, not the token)"
    )
    await manager.create(session, time.time())
    client = redis.Redis.from_url(url)
    total = 0
    for key in sorted(await client.keys("broker:*")):
        usage = await client.memory_usage(key, samples=0) or 0
        kind = (await client.type(key)).decode()
        value = (
            f"{await client.strlen(key)} B value" if kind == "string" else f"{await client.hlen(key)} entry"
        )
        total += usage
        print(f"  {key.decode()[:40]:<42}{kind:<8}{usage:>6} B in Redis ({value})")
    print(
        f"Redis memory for one session: {total} B in total "
        f"(session record {(await client.memory_usage((await client.keys('broker:s:*'))[0])) or 0} B)"
    )
    print("note: the company index is shared by all of a company's sessions; the user and Entra sign-in")
    print("      indexes by that user's sessions (one each for a user with one session).")
    # The figure that matters: what each further session adds, each of another user (own user and sign-in
    # indexes, an entry in the shared company index), as Redis itself counts it.
    count = 1000
    before = int((await client.info("memory"))["used_memory"])
    for n in range(count):
        other = replace(entra_sized_session(), oid=f"{n:08x}-4a5b-4c6d-8e7f-9a0b1c2d3e4f", sid=f"sid-{n}")
        await manager.create(other, time.time())
    after = int((await client.info("memory"))["used_memory"])
    per_session = (after - before) / count
    print(f"Redis used_memory per session over {count} more sessions of distinct users: {per_session:.0f} B")
    await client.aclose()
    await store.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as (url, _, _):
        asyncio.run(measure(url))


if __name__ == "__main__":
    main()

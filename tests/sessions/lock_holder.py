"""A gateway replica that takes a store lock, says so, and holds it until it is killed (never releasing).

Run as a child process by the contract suite (``python -m tests.sessions.lock_holder '<json>'``): killing
it with SIGKILL is the honest way to show what a crashed replica leaves behind, a lease nobody extends.
"""

from __future__ import annotations

import asyncio
import json
import sys

from broker.sessions.redis_store import RedisStore
from broker.sessions.redis_url import TlsFiles


async def hold(url: str, tls: TlsFiles | None, prefix: str, name: str, lease_seconds: float) -> None:
    """Acquire ``name``, print ``held`` (or ``busy``), then sleep until killed."""
    store = RedisStore(url, tls, prefix=prefix)
    async with store.lock(name, lease_seconds, wait_seconds=5) as held:
        print("held" if held else "busy", flush=True)
        await asyncio.sleep(3600)


def main(argv: list[str]) -> None:
    """Arguments: one JSON object with url, tls (ca_file/cert_file/key_file or null), prefix, name, lease."""
    args = json.loads(argv[0])
    tls = TlsFiles(**args["tls"]) if args["tls"] else None
    asyncio.run(hold(args["url"], tls, args["prefix"], args["name"], float(args["lease"])))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Sentinel failover: the master dies, the sentinels promote the replica, the store follows by itself.

It kills a master, so it gets a Sentinel deployment of its own rather than the session-wide one.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from broker.errors import SessionStoreUnavailable
from broker.sessions.redis_store import RedisStore
from tests.support.redis_topologies import client, sentinel_setup, wait_until

FAILOVER_WITHIN = 30.0  # down-after 1 s + agreement + election + promotion: a few seconds in practice

log = logging.getLogger(__name__)


async def test_store_reads_from_the_promoted_replica_after_the_master_is_killed(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with sentinel_setup(tmp_path_factory.mktemp("failover")) as setup:
        setup.wait_ready_for_failover()
        store = RedisStore(setup.url, prefix="failover:")
        try:
            await store.put("session", b"survives the failover", 60)
            with client(setup.replica_port) as replica:  # replicated before the master dies
                wait_until(
                    "value replicated",
                    lambda: replica.get("failover:session") is not None,
                    setup.procs,
                    timeout=5,
                )

            setup.procs.kill("master")  # SIGKILL: a crash, not a handover
            killed = time.monotonic()
            unavailable = 0
            while True:
                try:
                    value = await store.get("session")
                    break
                except SessionStoreUnavailable:  # a clear 503 while there is no master, never a hang
                    unavailable += 1
                assert time.monotonic() - killed < FAILOVER_WITHIN, "no failover within the bound"
                await asyncio.sleep(0.1)
            failover_seconds = time.monotonic() - killed
            log.info("failover: store served again %.1f s after the master was killed", failover_seconds)

            assert value == b"survives the failover"
            assert unavailable > 0  # it really went through an outage
            for port in setup.sentinel_ports:
                assert setup.master_addr(port) == ("127.0.0.1", setup.replica_port)
            await store.put("after", b"written to the new master", 60)
            with client(setup.replica_port) as promoted:
                assert promoted.info("replication")["role"] == "master"
                assert promoted.get("failover:after") == b"written to the new master"
        finally:
            await store.close()

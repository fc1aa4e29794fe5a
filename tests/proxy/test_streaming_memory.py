"""200 MB up and 200 MB down through a gateway in its own process: its memory stays flat.

The gateway runs as ``broker run`` in a subprocess so that its resident memory can be read from
``/proc/<pid>/status`` without the test's own buffers (client and whoami backend) in the figure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.broker_run import BrokerRun
from tests.support.stack import running_stack

MIB = 1024 * 1024
TOTAL = 200 * MIB
MAX_GROWTH = 50 * MIB
BULK_ROUTE = {
    "host": "127.0.0.1",
    "path": "/bulk/",
    "upstream": "{backend_url}",
    "auth": "public",
    "strip_prefix": True,
    "max_body": 0,
}

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")


def memory(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in bytes."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(value.split()[0]) * 1024
    return figures


async def upload(total: int) -> AsyncIterator[bytes]:
    """``total`` bytes in 1 MiB chunks, produced while they are sent (the same buffer every time)."""
    chunk = bytes(MIB)
    for _ in range(total // MIB):
        yield chunk


async def through(client: aiohttp.ClientSession, url: str, size: int) -> None:
    """One upload and one download of ``size`` bytes, both counted at the far end."""
    async with client.post(
        f"{url}/bulk/upload", data=upload(size), headers={"Accept": "application/json"}
    ) as r:
        assert r.status == 200
        assert (await r.json())["body_bytes"] == size
    received = 0
    async with client.get(f"{url}/bulk/_demo/bytes", params={"n": str(size)}) as r:
        assert r.status == 200
        async for chunk in r.content.iter_chunked(MIB):
            received += len(chunk)
    assert received == size


async def test_200_mb_each_way_keeps_gateway_memory_flat(tmp_path: Path) -> None:
    async with running_stack("memory", tmp_path, {}, routes_extra=[BULK_ROUTE]) as stack:
        # Port 0: the gateway binds a port of its own and logs it.
        broker = BrokerRun(
            stack.config_path, tmp_path / "gateway.log", stack.env, ["--listen", "127.0.0.1:0"]
        )
        broker.start()
        try:
            url = f"http://127.0.0.1:{await broker.bound_port()}"
            await broker.serving(url)
            assert broker.proc is not None
            async with aiohttp.ClientSession() as client:
                await through(client, url, 8 * MIB)  # warm up: code paths, pools, buffers
                before = memory(broker.proc.pid)
                await through(client, url, TOTAL)
                after = memory(broker.proc.pid)
        finally:
            broker.kill()
    growth = after["VmHWM"] - before["VmRSS"]
    print(
        f"\ngateway memory: RSS before {before['VmRSS'] / MIB:.1f} MiB, "
        f"peak after {after['VmHWM'] / MIB:.1f} MiB (growth {growth / MIB:.1f} MiB) "
        f"for {TOTAL // MIB} MiB up and {TOTAL // MIB} MiB down"
    )
    assert growth < MAX_GROWTH

"""Real servers for the tests: redis-server on a free port, and aiohttp apps on loopback ports."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
from aiohttp import web


async def wait_until_serving(
    base: str, proc: subprocess.Popen[bytes], timeout: float = 20.0, log: Path | None = None
) -> None:
    """Poll ``{base}/.auth/healthz`` until it answers 200; fail at once if ``proc`` (a ``broker run``) has
    exited, showing the end of its ``log`` when there is one."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:] if log else "the gateway exited at start-up"
            try:
                async with http.get(f"{base}/.auth/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"the gateway at {base} did not start within {timeout:.0f} s")


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], int]]:
    """Spawn a throw-away redis-server on a free loopback port; yield (url, process, port)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server is not installed (make test installs it); the tests need a real Redis"
        )
    port = free_port()
    proc = start_redis(binary, port, workdir)
    try:
        yield f"redis://127.0.0.1:{port}/0", proc, port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def start_redis(binary: str, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """Start redis-server on ``port`` and wait until it accepts connections."""
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")


async def serve(app: web.Application, port: int) -> web.AppRunner:
    """Run an aiohttp app on 127.0.0.1:port (real HTTP over loopback)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner

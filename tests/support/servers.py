"""Real servers for the tests: redis-server on a free port, and aiohttp apps on loopback ports."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web


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

"""Real servers for the tests: redis-server and aiohttp apps on loopback ports (``tests.support.ports``)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import redis
from aiohttp import web
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.ports import HeldPort, PortTaken, on_some_port, says_port_taken


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


@contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], int]]:
    """Spawn a throw-away redis-server on a loopback port it binds itself; yield (url, process, port)."""
    port, proc = start_redis_on_some_port(redis_binary(), workdir)
    try:
        yield f"redis://127.0.0.1:{port}/0", proc, port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def redis_binary() -> str:
    """The redis-server to run (the tests need a real one)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server is not installed (make test installs it); the tests need a real Redis"
        )
    return binary


def start_redis_on_some_port(binary: str, workdir: Path) -> tuple[int, subprocess.Popen[bytes]]:
    """Start redis-server on a port nobody else has bound (tried at the moment of use); (port, process)."""
    return on_some_port(lambda port: (port, start_redis(binary, port, workdir)))


def start_redis(binary: str, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """Start redis-server on ``port`` and wait until it answers; ``PortTaken`` if another process has it."""
    log = workdir / f"redis-{port}.log"
    with log.open("ab") as out:
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
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if says_port_taken(log.read_text(errors="replace")):
                raise PortTaken(port)
            raise RuntimeError(f"redis-server exited on port {port}:\n{log.read_text()[-2000:]}")
        if redis_answers_as(port, proc.pid):
            return proc
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"redis-server did not start on port {port}:\n{log.read_text()[-2000:]}")


def redis_answers_as(port: int, pid: int, **kwargs: Any) -> bool:
    """Whether the Redis answering on 127.0.0.1:port is process ``pid`` (not another that has the port)."""
    try:
        with redis.Redis(
            host="127.0.0.1",
            port=port,
            socket_timeout=1,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 0),
            **kwargs,
        ) as client:
            return int(client.info("server")["process_id"]) == pid
    except (redis.RedisError, OSError):
        return False


async def serve(app: web.Application, port: HeldPort | None = None) -> web.AppRunner:
    """Run an aiohttp app on a held loopback port, or without one on a port the OS picks at bind time
    (``runner.addresses``): real HTTP over loopback."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    if port is None:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
    else:
        await web.SockSite(runner, port.listener()).start()
    return runner

"""No test races for a port (issue 15): ``free_port()`` (bind port 0, close, return the number) is gone, and
the ports the tests use instead are really theirs."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

import tests.support.servers as servers
from tests.support.ports import HeldPort, PortTaken, on_some_port
from tests.support.servers import redis_binary, start_redis, start_redis_on_some_port

ROOT = Path(__file__).resolve().parents[2]


def test_free_port_is_gone_from_the_tests_and_the_benches() -> None:
    """Neither the helper nor any use of it (nor a copy of it under the same name) is left."""
    assert not hasattr(servers, "free_port")
    found = subprocess.run(
        ["grep", "-rn", "--include=*.py", "--include=*.sh", "free_port", "tests", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    hits = [line for line in found.stdout.splitlines() if not line.startswith("tests/support/test_ports.py")]
    assert hits == [], "\n".join(hits)


def connect(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_a_held_port_is_nobody_elses_and_refuses_until_we_listen() -> None:
    """While held, the port refuses connections unless one of our listeners is open, and no other socket
    (with or without SO_REUSEADDR) can bind it, even between two of our servers."""
    with HeldPort() as port:
        with pytest.raises(ConnectionRefusedError):
            connect(port.number)
        listener = port.listener()
        connect(port.number)
        listener.close()
        with pytest.raises(ConnectionRefusedError):
            connect(port.number)
        for reuse_address in (False, True):
            with socket.socket() as other:
                if reuse_address:
                    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                with pytest.raises(OSError, match="in use"):
                    other.bind(("127.0.0.1", port.number))
        with port.listener():  # and it opens again
            connect(port.number)


def test_on_some_port_tries_another_port_when_one_is_taken() -> None:
    """``start`` is retried on other ports while it reports the port taken, and not beyond the bound."""
    tried: list[int] = []

    def taken_twice(port: int) -> int:
        tried.append(port)
        if len(tried) < 3:
            raise PortTaken(port)
        return port

    assert on_some_port(taken_twice) == tried[-1] and len(tried) == 3
    with pytest.raises(RuntimeError, match="no port could be bound in 4 attempts"):
        on_some_port(lambda port: (_ for _ in ()).throw(PortTaken(port)), attempts=4)


def test_redis_on_a_taken_port_says_so_and_starts_elsewhere(tmp_path: Path) -> None:
    """redis-server started on a port someone else holds reports ``PortTaken`` (it is not mistaken for the
    other's server); started on some port, it comes up on one of its own."""
    with HeldPort() as port, port.listener():
        with pytest.raises(PortTaken):
            start_redis(redis_binary(), port.number, tmp_path)
    number, proc = start_redis_on_some_port(redis_binary(), tmp_path)
    try:
        assert servers.redis_answers_as(number, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)

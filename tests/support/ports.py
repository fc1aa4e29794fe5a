"""Loopback ports for the tests that nobody else can take between choosing one and serving on it.

Binding port 0, closing the socket and passing the number on ("a free port") lets any other process, or
any client socket's own port, take it before the server binds it: ``address already in use`` (issue 15).
Instead:

- a server of ours (aiohttp in this process, or ``broker run`` with several workers, which listen with
  SO_REUSEPORT) gets a ``HeldPort``: a socket bound to port 0 and kept bound, not listening, for as long
  as the test runs. Servers listen on the port through their own SO_REUSEPORT sockets, so the port can be
  closed (it then refuses connections) and opened again, while no other process can bind it;
- a ``HeldPort`` that nothing listens on is "a port that refuses connections" for as long as it is held;
- a server that binds its own port (redis-server) is started on a candidate port and, when it reports the
  port taken, on another (``on_some_port``), a bounded number of times.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

HOST = "127.0.0.1"
PORT_ATTEMPTS = 20
# Candidates for servers that bind their own port: under Linux's ephemeral range (32768-60999), so no
# client socket is ever given one of them as its own port; port + 10000 (Redis Cluster's bus) is under it
# too. Another process may still listen on a candidate: the server then reports it and the next is tried.
CANDIDATE_PORTS = range(10000, 22768)

T = TypeVar("T")


def _reuse_port_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # SO_REUSEPORT only lets sockets of this user that also set it share the port: our own listeners
    # (and ``broker run``'s workers); everyone else gets EADDRINUSE for as long as the port is held.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


class HeldPort:
    """A loopback port this test holds until ``close``: it refuses connections except while a server of
    ours listens on it (``listener``), and no other process can bind it meanwhile."""

    def __init__(self) -> None:
        self._hold = _reuse_port_socket()
        self._hold.bind((HOST, 0))
        self.number = int(self._hold.getsockname()[1])
        self.url = f"http://{HOST}:{self.number}"

    def listener(self) -> socket.socket:
        """A new listening socket on the port, for one server (``web.SockSite``); closing it, as stopping
        the server does, leaves the port held and refusing connections again."""
        sock = _reuse_port_socket()
        try:
            sock.bind((HOST, self.number))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        """Release the port."""
        self._hold.close()

    def __enter__(self) -> HeldPort:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def says_port_taken(log: str) -> bool:
    """Whether a server's output reports its port taken: strerror(EADDRINUSE) as redis-server prints it, or
    lower-cased as asyncio's bind error (aiohttp servers: ``broker run``, ``broker devidp``) does."""
    return "address already in use" in log.lower()


class PortTaken(Exception):
    """A server we started could not bind its port: another process has it (so try another port)."""


def on_some_port(start: Callable[[int], T], attempts: int = PORT_ATTEMPTS) -> T:
    """``start(port)`` on candidate ports until it does not raise ``PortTaken``, at most ``attempts`` times;
    ``start`` binds the port at the moment of use and raises ``PortTaken`` when it was taken."""
    tried = []
    for _ in range(attempts):
        port = random.choice(CANDIDATE_PORTS)  # no shared order: parallel runs rarely pick the same one
        try:
            return start(port)
        except PortTaken:
            tried.append(port)
    raise RuntimeError(f"no port could be bound in {attempts} attempts (tried {tried})")

"""``host:port`` listen addresses, as the config and the command line give them."""

from __future__ import annotations


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6; an empty host means every address) -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address must be host:port, got {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)

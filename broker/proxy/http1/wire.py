"""The bytes of an upstream request: request line, headers, body framing. Pure.

Every name and value is checked before anything is written: a header name that is not an RFC 9110 token,
or a value with CR, LF or NUL, would let a value (an identity claim, say) end the header block early and
add headers or a second request of its own (request splitting). Such a request is refused whole and
never sent (``UnsendableHeader``); the checks run over the names joined and the header block as written,
a few C-level scans per request instead of one per header.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from broker.errors import UnsendableHeader

# RFC 9110 section 5.6.2 tokens, joined by ':' (no token character): one fullmatch checks every name.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKENS = re.compile(rf"{_TOKEN}(?::{_TOKEN})*")
_METHOD = re.compile(_TOKEN)
# A request-target never holds whitespace or control characters (RFC 9112 section 3.2).
_TARGET_BAD = re.compile(r"[\x00-\x20\x7f]")
# Methods whose requests carry no content unless they say so: no ``Content-Length: 0`` added for them.
BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
LAST_CHUNK = b"0\r\n\r\n"


def request_head(
    method: str,
    target: str,
    host: str | None,
    headers: Iterable[tuple[str, str]],
    *,
    chunked: bool,
    length: bool,
) -> bytes:
    """The request line and header block of an HTTP/1.1 request.

    ``host`` is sent as ``Host``, first, as aiohttp did; None when ``headers`` carry it (``preserve_host``).
    ``chunked``: the body goes with ``Transfer-Encoding: chunked`` (it has no declared length).
    ``length``: the headers carry ``Content-Length`` already; a bodyless request of a method that may have
    content gets ``Content-Length: 0`` (as aiohttp sent it: some servers answer 411 without one).
    Raises ``UnsendableHeader`` (naming the header, never the value) for anything that could split it.
    """
    pairs = list(headers)
    if not _METHOD.fullmatch(method) or _TARGET_BAD.search(target) or not target:
        raise UnsendableHeader("the request line cannot be sent")
    names = ":".join([name for name, _ in pairs])
    if pairs and not _TOKENS.fullmatch(names):
        bad = next(name for name, _ in pairs if not _METHOD.fullmatch(name))
        raise UnsendableHeader(f"header name {bad!r} is not a token")
    # Every "name: value" joined by CRLF: any CR or LF beyond those separators (or a NUL) is in a value.
    block = "\r\n".join(map(": ".join, pairs))
    if pairs and (block.count("\r") >= len(pairs) or block.count("\n") >= len(pairs) or "\0" in block):
        bad = next(n for n, v in pairs if "\r" in v or "\n" in v or "\0" in v)
        raise UnsendableHeader(f"header {bad!r} has a CR, LF or NUL in its value")
    if host is not None and ("\r" in host or "\n" in host or "\0" in host):
        raise UnsendableHeader("header 'Host' has a CR, LF or NUL in its value")
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    if host is not None:
        lines.append(f"Host: {host}\r\n")
    if pairs:
        lines.append(block)
        lines.append("\r\n")
    if chunked:
        lines.append("Transfer-Encoding: chunked\r\n")
    elif not length and method not in BODYLESS_METHODS:
        lines.append("Content-Length: 0\r\n")
    lines.append("\r\n")
    # Values the client sent as bytes outside UTF-8 were decoded with surrogateescape: the same bytes go on.
    return "".join(lines).encode("utf-8", "surrogateescape")


def chunk_size_line(size: int) -> bytes:
    """The size line of one chunk of a chunked body (RFC 9112 section 7.1)."""
    return b"%x\r\n" % size

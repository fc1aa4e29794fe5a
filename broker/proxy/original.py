"""Which request an ingress asks the broker about (forward-auth): a pure reading of the check's headers.

Ingresses describe the original request in three ways:

- nginx ``auth_request`` and ingress-nginx ``auth-url``: ``X-Original-URL`` (absolute) and
  ``X-Original-Method``;
- Traefik ``ForwardAuth`` and Caddy ``forward_auth``: ``X-Forwarded-Method/-Proto/-Host/-Uri``;
- Envoy ``ext_authz`` (HTTP service): the original path after the verify path's prefix, the original
  ``Host`` and method as they are.

These headers are believed only from ``server.trusted_proxies`` (the handler checks the peer first): from
anyone else they would let a client ask about another host or path than the one it is really reaching.
Every value is bounded and validated here; ``None`` means the description is unusable (400).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from broker.proxy.forwarded import KNOWN_PROTOS, validated_host

# Longer request targets than this are refused (nginx's default large_client_header_buffers is 8 KiB).
MAX_ORIGINAL_TARGET = 8192
# An HTTP method is a token (RFC 9110 section 9.1); real ones are short upper-case words.
_METHOD = re.compile(r"[A-Z][A-Z-]{0,31}")
# A target holds printable ASCII only: no space, control character, DEL or anything beyond ASCII. One C-level
# scan (a generator over the characters cost ~1 us per 100 characters on every check: issue 19).
_TARGET_BAD = re.compile(r"[^\x21-\x7e]")


@dataclass(frozen=True)
class OriginalRequest:
    """The request the ingress is deciding on: method, scheme, ``host[:port]`` and raw target (path?query)."""

    method: str
    scheme: str
    host: str
    target: str

    @property
    def raw_path(self) -> str:
        """The target without its query."""
        return self.target.split("?", 1)[0]

    @property
    def origin(self) -> str:
        """``scheme://host[:port]`` of the original request (where the login must happen)."""
        return f"{self.scheme}://{self.host}"


def original_request(
    headers: Mapping[str, str], method: str, host: str, suffix: str, default_scheme: str
) -> OriginalRequest | None:
    """The original request described by a trusted ingress's check, or None when it is not usable.

    ``method``, ``host`` and ``suffix`` are the check request's own method, ``Host`` and the raw path after
    the verify path (Envoy's ``path_prefix``); ``default_scheme`` is the broker's public URL's.
    """
    if "X-Original-URL" in headers:
        url = urlsplit(headers["X-Original-URL"].strip())
        if url.scheme.lower() not in KNOWN_PROTOS:
            return None
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        return _checked(headers.get("X-Original-Method", "GET"), url.scheme.lower(), url.netloc, target)
    if "X-Forwarded-Uri" in headers:
        return _checked(
            headers.get("X-Forwarded-Method", "GET"),
            _first(headers.get("X-Forwarded-Proto", default_scheme)).lower(),
            _first(headers.get("X-Forwarded-Host", host)),
            headers["X-Forwarded-Uri"],
        )
    if suffix.startswith("/"):
        scheme = _first(headers.get("X-Forwarded-Proto", default_scheme)).lower()
        return _checked(method, scheme, host, suffix)
    return None


def _first(value: str) -> str:
    """The hop nearest the client in a list-valued forwarding header."""
    return value.split(",", 1)[0].strip()


def _checked(method: str, scheme: str, host: str, target: str) -> OriginalRequest | None:
    """The parts, bounded and validated (an origin-form target, a known scheme, a valid host)."""
    method = method.strip()
    valid_host = validated_host(host)
    if (
        not _METHOD.fullmatch(method)
        or scheme not in KNOWN_PROTOS
        or valid_host is None
        or not target.startswith("/")
        or target.startswith("//")
        or len(target) > MAX_ORIGINAL_TARGET
        or _TARGET_BAD.search(target) is not None
    ):
        return None
    return OriginalRequest(method, scheme, valid_host, target)

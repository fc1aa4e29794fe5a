"""Where a request goes upstream: the route's target plus the request's path, mapped as configured. Pure.

The path and query go upstream exactly as the client encoded them (``%2F`` stays ``%2F``, ``+`` stays
``+``): re-encoding could make the upstream see a different resource than the one the route matched.
``strip_prefix`` and ``rewrite`` replace the matched prefix; they work on the raw segments, comparing each
decoded one with the prefix, so ``/wiki/a%2Fb`` keeps its encoded slash after the prefix is removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

from yarl import URL

from broker.config.schema import RouteConfig

UNIX_PREFIX = "unix:"
# Requests to a unix socket still need an authority: RFC 9112 section 3.2 wants a Host header.
UNIX_HOST = "localhost"
# Characters a configured ``rewrite`` may use as they are (RFC 3986 pchar plus '/', and '%' so an
# operator's own percent-encoding is kept); anything else is percent-encoded.
REWRITE_SAFE = "/%:@!$&'()*+,;=-._~"


@dataclass(frozen=True)
class UpstreamTarget:
    """A route's upstream: the base URL requests are joined to, and the unix socket to reach it by."""

    base: URL
    unix_socket: str | None = None


def parse_upstream(upstream: str) -> UpstreamTarget:
    """``http(s)://host:port/base`` as is; ``unix:/path.sock`` as ``http://localhost`` over that socket."""
    if upstream.startswith(UNIX_PREFIX):
        return UpstreamTarget(URL(f"http://{UNIX_HOST}"), upstream.removeprefix(UNIX_PREFIX))
    return UpstreamTarget(URL(upstream))


def _raw_segments(raw_path: str) -> tuple[list[str], bool]:
    """The raw (still encoded) segments with dot segments resolved and empty ones collapsed, as
    ``routing.normalise_path`` does with decoded ones; and whether the path ends in a slash."""
    segments: list[str] = []
    parts = raw_path.split("/")
    for part in parts:
        decoded = unquote(part)
        if decoded in ("", "."):
            continue
        if decoded == "..":
            if segments:
                segments.pop()
            continue
        segments.append(part)
    return segments, unquote(parts[-1]) in ("", ".", "..") and bool(segments)


def mapped_path(prefix: str, raw_path: str, replacement: str) -> str | None:
    """``raw_path`` with the route's ``prefix`` replaced by ``replacement``; None when the raw path does not
    start with the prefix segment by segment (an encoded ``/`` inside what matched as the prefix)."""
    segments, trailing = _raw_segments(raw_path)
    wanted = [s for s in prefix.split("/") if s]
    if [unquote(s) for s in segments[: len(wanted)]] != wanted:
        return None
    rest = segments[len(wanted) :]
    if rest:
        remainder = "/" + "/".join(rest) + ("/" if trailing else "")
    else:
        remainder = "/" if trailing else ""
    if not remainder:
        return replacement
    return replacement.rstrip("/") + remainder


def replacement_for(route: RouteConfig) -> str | None:
    """What replaces the matched prefix: ``/`` for ``strip_prefix``, the ``rewrite`` path, or None."""
    if route.rewrite is not None:
        return quote(route.rewrite, safe=REWRITE_SAFE)
    return "/" if route.strip_prefix else None


def upstream_url(
    target: UpstreamTarget, prefix: str, replacement: str | None, raw_path: str, raw_query: str
) -> URL | None:
    """The URL to request upstream, encoding kept as sent; None when the path cannot be mapped."""
    path = raw_path if replacement is None else mapped_path(prefix, raw_path, replacement)
    if path is None:
        return None
    base = target.base
    return URL.build(
        scheme=base.scheme,
        authority=base.raw_authority,
        path=base.raw_path.rstrip("/") + path,
        query_string=raw_query,
        encoded=True,
    )

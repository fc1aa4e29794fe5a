"""Return-URL validation: where the broker may send a browser after login or logout (no open redirect).

Accepted: a relative path (``/x?y``) or an absolute http(s) URL on an origin the gateway itself serves
(``ReturnTargets``: the public URL's origin and each concretely named route host, on the public URL's
scheme and port). Everything else -- ``//evil``, ``/\\evil``, ``https:evil``, encoded and whitespace
variants, CR/LF, another port or scheme of a routed host -- falls back to ``/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DEFAULT_RETURN = "/"
MAX_RETURN_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_plain_relative(path: str) -> bool:
    # Browsers treat "\" as "/" and ignore tabs/newlines inside URLs, so "/\evil" and "/\t/evil" are
    # protocol-relative to them; refuse any backslash or control character anywhere.
    if any(ch == "\\" or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        return False
    return path.startswith("/") and not path.startswith("//")


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` normalised (lowercase host, default port elided); None if not http(s)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a bad port, or a host that changes under NFKC normalisation ("http://／")
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    effective = port if port is not None else DEFAULT_PORTS[parts.scheme]
    suffix = "" if effective == DEFAULT_PORTS[parts.scheme] else f":{effective}"
    return f"{parts.scheme}://{host.lower()}{suffix}"


@dataclass(frozen=True)
class ReturnTargets:
    """The origins an absolute return URL may name: exactly those the gateway serves (built once)."""

    origins: frozenset[str]

    @classmethod
    def served(cls, public_url: str, route_hosts: Iterable[str]) -> ReturnTargets:
        """The public URL's origin, and each concrete route host on the public URL's scheme and port.

        A ``*`` route never widens the set (it would make every host on the internet a target), nor does
        ``*.suffix``: the gateway cannot know which names under the suffix point at it, and a dangling or
        user-controlled subdomain (``someone.pages.example.com``) would become a redirect target.
        """
        public = urlsplit(public_url)
        netloc_port = f":{public.port}" if public.port is not None else ""
        origins = {origin_of(public_url)}
        for host in route_hosts:
            if host and "*" not in host:
                origins.add(origin_of(f"{public.scheme}://{host}{netloc_port}"))
        return cls(frozenset(o for o in origins if o is not None))

    def allows(self, origin: str) -> bool:
        """Whether a normalised origin is one the gateway serves."""
        return origin in self.origins


def safe_return_to(candidate: str | None, origin_allowed: Callable[[str], bool]) -> str:
    """``candidate`` if it is safe to redirect to, else ``/``.

    ``origin_allowed`` receives the normalised origin (``origin_of``) of an absolute candidate.
    """
    if not candidate or len(candidate) > MAX_RETURN_LENGTH:
        return DEFAULT_RETURN
    decoded = unquote(candidate)
    if candidate.startswith("/"):
        # Check the decoded form too: "/%2f%2fevil" or "/%5cevil" must not become "//evil" anywhere.
        return candidate if _is_plain_relative(candidate) and _is_plain_relative(decoded) else DEFAULT_RETURN
    if any(ch == "\\" or ord(ch) < 0x21 or ord(ch) == 0x7F for ch in decoded):
        return DEFAULT_RETURN
    try:
        parts = urlsplit(candidate)
    except ValueError:  # e.g. a host that changes under NFKC normalisation ("http://／")
        return DEFAULT_RETURN
    if parts.scheme in DEFAULT_PORTS and parts.hostname and not parts.username and not parts.password:
        origin = origin_of(candidate)
        if candidate.startswith(f"{parts.scheme}://") and origin is not None and origin_allowed(origin):
            return candidate
    return DEFAULT_RETURN

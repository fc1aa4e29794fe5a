"""Return-URL validation: where the broker may send a browser after login or logout (no open redirect).

Accepted: a relative path (``/x?y``) or an absolute http(s) URL whose host the broker routes. Everything
else -- ``//evil``, ``/\\evil``, ``https:evil``, encoded and whitespace variants, CR/LF -- falls back
to ``/``.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote, urlsplit

DEFAULT_RETURN = "/"
MAX_RETURN_LENGTH = 2048


def _is_plain_relative(path: str) -> bool:
    # Browsers treat "\" as "/" and ignore tabs/newlines inside URLs, so "/\evil" and "/\t/evil" are
    # protocol-relative to them; refuse any backslash or control character anywhere.
    if any(ch == "\\" or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        return False
    return path.startswith("/") and not path.startswith("//")


def safe_return_to(candidate: str | None, host_is_routed: Callable[[str], bool]) -> str:
    """``candidate`` if it is safe to redirect to, else ``/``."""
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
    if parts.scheme in ("http", "https") and parts.hostname and not parts.username and not parts.password:
        if candidate.startswith(f"{parts.scheme}://") and host_is_routed(parts.hostname):
            return candidate
    return DEFAULT_RETURN

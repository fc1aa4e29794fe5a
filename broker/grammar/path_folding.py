"""How upstream apps fold request paths, so routes are decided on the path the upstream will serve. Pure.

Many legacy upstreams do not read paths literally: IIS and ASP.NET compare them case-insensitively, Windows
drops trailing dots and spaces from each segment (``/admin./`` is ``/admin/``), and some servers map Unicode
look-alikes (fullwidth ``ａ``, the Kelvin sign, dotless ``ı`` upper-cased) to ASCII. Two foldings live here:

- ``fold(path, rules)``: exactly what a route's declared ``upstream_paths`` say the upstream does (ASCII
  case, Windows segment ends). Routes of such an upstream are indexed and looked up by this folding.
- ``widest_fold(path)``: every folding any upstream might do, and more (NFKC, case, accents, trailing dots
  and spaces). Used only to *detect* that a path could mean another route's path (then: 400), so folding
  too much costs a refused crafted path, never a bypass.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class PathRules:
    """How one upstream reads paths (from the ``upstream_paths`` of its routes)."""

    case_insensitive: bool = False
    windows: bool = False


LITERAL = PathRules()
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# Windows (Win32 path normalisation) strips these from the end of every segment.
_WINDOWS_TRAILING = ". "
# Characters that change a path's structure or its decoding: a segment whose folding *adds* one of them (a
# fullwidth solidus, reverse solidus, percent, semicolon ...) is read as a different path by a folding server.
_STRUCTURAL = "/\\?#%;"


def fold_segment(segment: str, rules: PathRules) -> str:
    """One segment as an upstream with these rules reads it (ASCII only: what IIS/Windows really do)."""
    if rules.case_insensitive:
        segment = segment.translate(_ASCII_LOWER)
    if rules.windows:
        segment = segment.rstrip(_WINDOWS_TRAILING)
    return segment


def fold(path: str, rules: PathRules) -> str:
    """A matching path (see ``routing.matching_path``) as an upstream with these rules reads it."""
    if rules == LITERAL:
        return path
    return "/".join(fold_segment(segment, rules) for segment in path.split("/"))


def widest_fold_segment(segment: str) -> str | None:
    """The segment under every folding a server might apply; None when that folding makes it a separator,
    an empty or dot segment, or adds a character that changes how the path is split or decoded."""
    if segment.isascii():
        folded = segment.lower().rstrip(_WINDOWS_TRAILING)
    else:
        # NFKC maps fullwidth letters and ligatures to ASCII; upper-then-lower catches "ı" -> "I" -> "i" and
        # "ſ" -> "S" -> "s"; NFKD without combining marks catches "İ" and accented look-alikes.
        folded = unicodedata.normalize("NFKC", segment).upper().lower()
        folded = "".join(ch for ch in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(ch))
        folded = folded.rstrip(_WINDOWS_TRAILING)
        if any(folded.count(ch) > segment.count(ch) for ch in _STRUCTURAL):
            return None
    if segment and folded in ("", ".", ".."):
        return None
    return folded


def widest_fold(path: str) -> str | None:
    """A matching path under ``widest_fold_segment``, or None when one of its segments is refused."""
    folded: list[str] = []
    for segment in path.split("/"):
        one = widest_fold_segment(segment)
        if one is None:
            return None
        folded.append(one)
    return "/".join(folded)


def upstream_origin(upstream: str) -> str:
    """An upstream URL as one key: scheme, host and port (or the unix socket path)."""
    if upstream.startswith("unix:"):
        return upstream
    parts = urlsplit(upstream)
    try:
        port = parts.port
    except ValueError:
        port = None
    scheme = parts.scheme.lower()
    default_port = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port or default_port}"

"""Property-based tests (Hypothesis) for what attackers control: paths, return URLs, cookie tickets.

Each property is the security rule itself, checked on thousands of generated inputs instead of a list
of known spellings.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.config.schema import RouteConfig
from broker.http.redirects import safe_return_to
from broker.proxy.routing import AmbiguousRoute, RouteTable, matching_path, prefix_matches
from broker.sessions.sealing import SealKey
from broker.sessions.ticket import format_ticket, parse_ticket

# Path pieces that matter for traversal and encoding tricks, mixed with ordinary text.
PIECES = st.sampled_from(
    [
        "/",
        "//",
        ".",
        "..",
        "%2e",
        "%2E",
        "%2f",
        "%2F",
        "%5c",
        "\\",
        ";",
        "..;",
        "%252e",
        "%00",
        "%0d%0a",
        "public",
        "admin",
        "a",
        "%20",
        "?",
        "#",
        "~",
        "%c0%ae",
    ]
)
RAW_PATHS = st.lists(st.one_of(PIECES, st.text(min_size=1, max_size=4)), min_size=1, max_size=12).map(
    lambda parts: "/" + "".join(parts)
)
TABLE = RouteTable(
    [
        RouteConfig(host="h", upstream="http://u", path="/", auth="public"),
        RouteConfig(host="h", upstream="http://u", path="/admin"),
    ]
)


@settings(max_examples=3000, deadline=None)
@given(RAW_PATHS)
def test_no_path_reaches_admin_content_through_the_public_route(raw: str) -> None:
    """Whatever the spelling, a path an upstream would read as /admin/... matches the protected route."""
    path = matching_path(raw)
    if path is None:
        return  # refused with 400: nothing is forwarded
    try:
        route = TABLE.match("h", path)
    except AmbiguousRoute:
        return  # refused with 400 (a folding upstream could read it as the admin route's path)
    assert route is not None
    # What a server decoding once and resolving dot segments and backslashes would serve:
    upstream_view = unquote(raw.split("?", 1)[0]).replace("\\", "/")
    segments: list[str] = []
    for segment in upstream_view.split("/"):
        segment = segment.split(";", 1)[0]
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    if segments[:1] == ["admin"]:
        assert route.config.auth == "enforce", (raw, path)


@settings(max_examples=3000, deadline=None)
@given(RAW_PATHS)
def test_an_accepted_path_has_no_dot_segments_or_backslashes(raw: str) -> None:
    path = matching_path(raw)
    if path is not None:
        assert path.startswith("/") and "\\" not in path
        assert not any(seg.split(";", 1)[0] in (".", "..") for seg in path.split("/"))
        assert prefix_matches("/", path)


HOSTS = st.sampled_from(["app.example.com", "evil.example", "app.example.com.evil.example", "127.0.0.1", ""])
URL_PIECES = st.sampled_from(
    [
        "/",
        "//",
        "\\",
        "/\\",
        "https:",
        "http://",
        "javascript:",
        "%2f",
        "%5c",
        "\r\n",
        "\t",
        " ",
        "@",
        ":",
        "app.example.com",
        "evil.example",
        "?rd=",
        "#",
        "\u3002",
        "\uff0f",
        "%0a",
        "x",
    ]
)
CANDIDATES = st.one_of(
    st.lists(URL_PIECES, min_size=1, max_size=10).map("".join),
    st.builds(lambda h, p: f"https://{h}{p}", HOSTS, st.sampled_from(["", "/", "/x", "//y"])),
    st.text(max_size=30),
)


def routed(origin: str) -> bool:
    return origin == "https://app.example.com"


@settings(max_examples=3000, deadline=None)
@given(CANDIDATES)
def test_return_urls_never_leave_the_routed_hosts(candidate: str) -> None:
    """The result is either a plain relative path or an absolute URL to a routed host: never elsewhere."""
    target = safe_return_to(candidate, routed)
    if target.startswith("/"):
        assert not target.startswith("//") and "\\" not in target
        assert all(ord(ch) >= 0x20 and ord(ch) != 0x7F for ch in target)
        decoded = unquote(target)
        assert not decoded.startswith("//") and "\\" not in decoded
    else:
        parts = urlsplit(target)
        assert parts.scheme in ("http", "https") and parts.hostname == "app.example.com"
        assert not parts.username and not parts.password


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=120))
def test_arbitrary_cookie_values_never_parse_into_a_different_ticket(value: str) -> None:
    """A ticket parses only from its one canonical spelling."""
    key = parse_ticket(value)
    if key is not None:
        assert format_ticket(key) == value


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_single_character_change_breaks_a_ticket(data: st.DataObject) -> None:
    key = SealKey.new()
    ticket = format_ticket(key)
    i = data.draw(st.integers(min_value=0, max_value=len(ticket) - 1))
    replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c != ticket[i]))
    tampered = ticket[:i] + replacement + ticket[i + 1 :]
    parsed = parse_ticket(tampered)
    assert parsed is None or not parsed.same_as(key)

"""The route that decides is the route the upstream serves (issue 12, stream A).

Upstreams that read ``/ADMIN/``, ``/admin./``, ``/admin%20/`` or ``/ａｄｍｉｎ/`` as ``/admin/`` (IIS,
ASP.NET, Windows) and apps that serve ``/x`` as ``/x/`` must not get such a spelling under a more
permissive route's policy. End to end against the real stack and a recording upstream, plus a property
test on the table.
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from broker.config.schema import RouteConfig, UpstreamPathsConfig
from broker.proxy.routing import AmbiguousRoute, RouteTable, matching_path
from tests.security.conftest import HOST, RECORDER_URL, Target, running_target
from tests.support.stack import ADELE, ALEX
from tests.support.upstreams import recording_app, serve_on

FOLDING = {"case_insensitive": True, "windows": True}


@pytest.fixture
async def paths(tmp_path: Path, attack_store: str) -> AsyncIterator[tuple[Target, Target]]:
    """(plain, iis): ``/plain/`` public and ``/plain/admin/`` admin-only on the recorder (nothing
    declared); ``/iis/`` public and ``/iis/admin/`` admin-only on a second recorder, declared
    case-insensitive + Windows by its third route."""
    app, iis_recorder = recording_app()
    runner, iis = await serve_on(app)
    routes = [
        {"host": HOST, "path": "/plain/", "upstream": RECORDER_URL, "auth": "public"},
        {"host": HOST, "path": "/plain/admin/", "upstream": RECORDER_URL, "allow": {"roles": ["admin"]}},
        {"host": HOST, "path": "/iis/", "upstream": iis, "auth": "public"},
        {"host": HOST, "path": "/iis/admin/", "upstream": iis, "allow": {"roles": ["admin"]}},
        {"host": HOST, "path": "/iis/upload/", "upstream": iis, "auth": "public", "upstream_paths": FOLDING},
    ]
    try:
        async with running_target(tmp_path, routes_more=routes, store=attack_store) as plain:
            yield plain, Target(plain.stack, iis_recorder)
    finally:
        await runner.cleanup()


async def get(target: Target, raw: str, cookie: str | None = None) -> tuple[int, str]:
    """GET a raw (already encoded) path as an API client; (status, error code or "")."""
    headers = {"Accept": "application/json", **({"Cookie": cookie} if cookie else {})}
    async with (
        aiohttp.ClientSession() as client,
        client.get(
            URL(f"{target.stack.gateway_url}{raw}", encoded=True), headers=headers, allow_redirects=False
        ) as resp,
    ):
        body = await resp.json(content_type=None) if resp.status != 200 else {}
        return resp.status, body.get("error", "") if isinstance(body, dict) else ""


async def cookie_of(target: Target, username: str) -> str:
    """A Cookie header value for a freshly signed-in user."""
    async with target.stack.browser() as browser:
        await target.stack.login(browser, "contoso", username)
        return "broker=" + next(c.value for c in browser.cookie_jar if c.key == "broker")


SPELLINGS_OF_ADMIN = [
    "/{base}/ADMIN/x",
    "/{base}/Admin/x",
    "/{base}/admin./x",
    "/{base}/admin%20/x",
    "/{base}/admin.%20./x",
    "/{base}/ADMIN%20./x",
    "/{base}/%EF%BD%81dmin/x",  # fullwidth "a"
    "/{base}/adm%C4%B1n/x",  # dotless "i", upper-cased to "I" by .NET
    "/{base}/admin%C2%A0/x",  # no-break space, NFKC " "
]


@pytest.mark.parametrize("spelling", SPELLINGS_OF_ADMIN)
async def test_folded_spellings_of_an_admin_route_on_an_undeclared_upstream_are_a_400(
    paths: tuple[Target, Target], spelling: str
) -> None:
    """Nothing declared: a spelling a folding upstream reads as /plain/admin/ is refused, never public."""
    plain, _ = paths
    assert await get(plain, spelling.format(base="plain")) == (400, "ambiguous_path")
    assert plain.paths_seen() == []


@pytest.mark.parametrize("spelling", SPELLINGS_OF_ADMIN[:6])
async def test_folded_spellings_on_a_declared_upstream_get_the_admin_routes_policy(
    paths: tuple[Target, Target], spelling: str
) -> None:
    """Declared case-insensitive + Windows (on another route to the same upstream): /iis/ADMIN./x is matched
    as /iis/admin/x: anonymous 401, a reader 403, an admin gets it; the public route never serves it."""
    _, iis = paths
    raw = spelling.format(base="iis")
    assert (await get(iis, raw))[0] == 401
    assert (await get(iis, raw, await cookie_of(iis, ALEX.username)))[0] == 403
    assert iis.paths_seen() == []
    assert (await get(iis, raw, await cookie_of(iis, ADELE.username)))[0] == 200
    assert iis.paths_seen() == [raw]
    assert iis.recorder.last.header("X-Broker-Assertion")  # served as the protected route, with identity


@pytest.mark.parametrize("spelling", SPELLINGS_OF_ADMIN[6:])
async def test_unicode_look_alikes_on_a_declared_upstream_are_a_400(
    paths: tuple[Target, Target], spelling: str
) -> None:
    _, iis = paths
    assert await get(iis, spelling.format(base="iis")) == (400, "ambiguous_path")
    assert iis.paths_seen() == []


async def test_a_directory_route_also_governs_its_name_without_the_slash(
    paths: tuple[Target, Target],
) -> None:
    """/plain/admin (no slash) is /plain/admin/'s, not the public /plain/'s; /plain/administrator is not."""
    plain, _ = paths
    assert (await get(plain, "/plain/admin"))[0] == 401
    assert plain.paths_seen() == []
    assert (await get(plain, "/plain/administrator"))[0] == 200
    assert plain.paths_seen() == ["/plain/administrator"]


async def test_a_company_route_without_its_slash_is_not_another_companys(
    paths: tuple[Target, Target],
) -> None:
    """The stack's /fabrikam/ route (Fabrikam only) governs /fabrikam too: a Contoso user gets 403, where
    the Contoso-only / route used to serve it."""
    plain, _ = paths
    cookie = await cookie_of(plain, ADELE.username)
    assert (await get(plain, "/fabrikam", cookie))[0] == 403
    assert (await get(plain, "/fabrikamx", cookie))[0] == 200


@pytest.mark.parametrize(
    "raw", ["/plain/...", "/plain/.%20/x", "/plain/%20/x", "/plain/a%EF%BC%8Fadmin", "/plain/%u0061dmin"]
)
async def test_segments_that_servers_fold_into_separators_or_nothing_are_a_400(
    paths: tuple[Target, Target], raw: str
) -> None:
    plain, _ = paths
    assert await get(plain, raw) == (400, "ambiguous_path")
    assert plain.paths_seen() == []


# --- property: no generated path reaches admin content through the public route -------------------------

PIECES = st.sampled_from(
    ["/", "//", "admin", "ADMIN", "Admin", "aDmIn", ".", "..", "%2e", " ", "%20", "%C2%A0", ";", "%3b"]
    + ["%EF%BD%81", "\uff41", "%C4%B1", "\u0131", "\u212a", "\u017f", "%u0061", "dmin", "a", "x", "\\", "%5c"]
)
RAW_PATHS = st.lists(st.one_of(PIECES, st.text(min_size=1, max_size=3)), min_size=1, max_size=10).map(
    lambda parts: "/" + "".join(parts)
)


def folding_upstream_reads(raw: str) -> list[str]:
    """What an IIS-like upstream serves, written independently of the gateway: decode once, ``\\`` is ``/``,
    ``;`` parameters dropped, dot segments resolved, then per segment NFKC, case (upper then lower, as .NET
    compares) and Windows' trailing dots and spaces dropped."""
    segments: list[str] = []
    for segment in unquote(raw.split("?", 1)[0]).replace("\\", "/").split("/"):
        segment = unicodedata.normalize("NFKC", segment.split(";", 1)[0]).upper().lower().rstrip(". ")
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return segments


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "undeclared"])
def test_no_path_reaches_admin_content_through_the_public_route_of_a_folding_upstream(declared: bool) -> None:
    rules = UpstreamPathsConfig(case_insensitive=declared, windows=declared)
    table = RouteTable(
        [
            RouteConfig(host="h", upstream="http://u", path="/", auth="public"),
            RouteConfig(host="h", upstream="http://u", path="/admin/", upstream_paths=rules),
        ]
    )

    @settings(max_examples=3000, deadline=None)
    @given(RAW_PATHS)
    def check(raw: str) -> None:
        path = matching_path(raw)
        if path is None:
            return  # 400: nothing forwarded
        try:
            route = table.match("h", path)
        except AmbiguousRoute:
            return  # 400: nothing forwarded
        assert route is not None
        if folding_upstream_reads(raw)[:1] == ["admin"]:
            assert route.config.auth == "enforce", (raw, path)

    check()

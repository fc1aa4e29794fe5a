"""Group overage in the ID token, and the Graph emulation that resolves it for the token's own user."""

from __future__ import annotations

import uuid
from typing import Any

import jwt
import pytest

from devidp.tokens import GRAPH_APP_ID
from tests.devidp.conftest import Starter
from tests.devidp.harness import (
    ADELE_OID,
    ALEX_OID,
    CONTOSO_ID,
    GROUP_ID,
    DevIdpHarness,
    make_config,
    verify_id_token,
)

MANY_GROUPS = [str(uuid.UUID(int=i + 1)) for i in range(201)]


async def graph(
    idp: DevIdpHarness, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    url = f"{idp.base}/graph/v1.0/{path}"
    async with idp.session.request(method, url, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


def assert_overage(idp: DevIdpHarness, claims: dict[str, Any], oid: str) -> None:
    assert "groups" not in claims
    assert claims["_claim_names"] == {"groups": "src1"}
    endpoint = f"{idp.base}/graph/v1.0/users/{oid}/getMemberObjects"
    assert claims["_claim_sources"] == {"src1": {"endpoint": endpoint}}


async def test_forced_overage(idp: DevIdpHarness) -> None:
    status, _ = await idp.control(f"users/{ADELE_OID}", {"groups_overage": True})
    assert status == 200
    _, body = await idp.sign_in()
    assert_overage(idp, await verify_id_token(idp, body["id_token"]), ADELE_OID)
    # The groups are still there, only through Graph.
    status, answer = await graph(
        idp, "POST", "me/getMemberObjects", body["access_token"], {"securityEnabledOnly": False}
    )
    assert (status, answer) == (200, {"value": [GROUP_ID]})


async def test_more_than_200_groups_is_an_overage(start: Starter) -> None:
    config = make_config()
    config.tenants[0].users[1].groups = list(MANY_GROUPS)
    config.tenants[0].users[0].groups = MANY_GROUPS[:200]  # exactly the limit still fits
    async with start(config) as idp:
        _, body = await idp.sign_in("alex@contoso.example")
        assert_overage(idp, await verify_id_token(idp, body["id_token"]), ALEX_OID)
        token = body["access_token"]
        for path in ("me/getMemberObjects", f"users/{ALEX_OID}/getMemberObjects"):
            status, answer = await graph(idp, "POST", path, token, {"securityEnabledOnly": True})
            assert status == 200 and answer == {"value": MANY_GROUPS}
        for path in ("me/transitiveMemberOf", f"users/{ALEX_OID}/transitiveMemberOf"):
            status, answer = await graph(idp, "GET", path, token)
            assert status == 200
            assert answer["value"][0] == {"@odata.type": "#microsoft.graph.group", "id": MANY_GROUPS[0]}
            assert [g["id"] for g in answer["value"]] == MANY_GROUPS

        _, body = await idp.sign_in("adele@contoso.example")
        claims = await verify_id_token(idp, body["id_token"])
        assert len(claims["groups"]) == 200 and "_claim_names" not in claims


async def test_access_token_is_for_graph_with_user_read(idp: DevIdpHarness) -> None:
    _, body = await idp.sign_in(scope="openid offline_access")
    for token in (body["access_token"], (await refreshed(idp, body["refresh_token"]))["access_token"]):
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["aud"] == GRAPH_APP_ID and "User.Read" in claims["scp"].split()
        assert (claims["tid"], claims["oid"]) == (CONTOSO_ID, ADELE_OID)


async def refreshed(idp: DevIdpHarness, refresh_token: str) -> dict[str, Any]:
    status, body = await idp.token({"grant_type": "refresh_token", "refresh_token": refresh_token})
    assert status == 200, body
    return body


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (None, "Access token is empty."),
        ("not-a-jwt", "JWT is not well formed"),
        ("id_token", "Invalid audience"),
        ("tampered", "Access token validation failure."),
        ("unsigned", "Signing key not found"),
    ],
)
async def test_graph_needs_a_valid_access_token(idp: DevIdpHarness, token: str | None, message: str) -> None:
    _, body = await idp.sign_in()
    access = body["access_token"]
    bearer = {
        None: None,
        "not-a-jwt": "not-a-jwt",
        "id_token": body["id_token"],  # right signature, wrong audience
        "tampered": access[:-4] + ("AAAA" if not access.endswith("AAAA") else "BBBB"),
        "unsigned": jwt.encode(jwt.decode(access, options={"verify_signature": False}), "", algorithm="none"),
    }[token]
    status, answer = await graph(idp, "GET", "me/transitiveMemberOf", bearer)
    assert status == 401
    assert answer["error"]["code"] == "InvalidAuthenticationToken"
    assert message in answer["error"]["message"]


async def test_expired_access_token_is_401(idp: DevIdpHarness) -> None:
    _, body = await idp.sign_in()
    idp.clock.advance(3601)
    status, answer = await graph(
        idp, "POST", "me/getMemberObjects", body["access_token"], {"securityEnabledOnly": False}
    )
    assert status == 401 and answer["error"]["code"] == "InvalidAuthenticationToken"


async def test_only_the_tokens_own_user_is_readable(idp: DevIdpHarness) -> None:
    _, body = await idp.sign_in()
    status, answer = await graph(idp, "GET", f"users/{ALEX_OID}/transitiveMemberOf", body["access_token"])
    assert status == 403 and answer["error"]["code"] == "Authorization_RequestDenied"


async def test_get_member_objects_needs_its_body(idp: DevIdpHarness) -> None:
    _, body = await idp.sign_in()
    status, answer = await graph(idp, "POST", "me/getMemberObjects", body["access_token"], {"x": 1})
    assert status == 400 and answer["error"]["code"] == "Request_BadRequest"


async def test_graph_requests_are_counted(idp: DevIdpHarness) -> None:
    _, body = await idp.sign_in()
    await graph(idp, "GET", "me/transitiveMemberOf", body["access_token"])
    await graph(idp, "GET", "me/transitiveMemberOf", None)
    assert (await idp.get_json(f"{idp.base}/_devidp/stats"))["graph"] == 2

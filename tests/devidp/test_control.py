"""Test-only controls (rotation, counters, user edits) and app-specific signing keys."""

from __future__ import annotations

import dataclasses

import jwt

from tests.devidp.conftest import Starter
from tests.devidp.harness import (
    ADELE_OID,
    CONTOSO_CLIENT,
    CONTOSO_ID,
    FABRIKAM_ID,
    DevIdpHarness,
    make_config,
    published_keys,
    verify_id_token,
)


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


async def kids(idp: DevIdpHarness, tenant: str = CONTOSO_ID, **params: str) -> list[str]:
    return [str(k.key_id) for k in (await published_keys(idp, tenant, **params)).keys]


# Key rotation


async def test_rotation_keeps_the_old_key_published(idp: DevIdpHarness) -> None:
    _, before = await idp.sign_in()
    old = kid_of(before["id_token"])
    status, rotated = await idp.control("keys/rotate")
    assert status == 200
    new = rotated["kid"]
    assert new != old and rotated["published"] == [new, old]
    assert await kids(idp) == [new, old] and await kids(idp, FABRIKAM_ID) == [new, old]
    _, after = await idp.sign_in()
    assert kid_of(after["id_token"]) == new
    # Tokens signed before the rollover still verify.
    for token in (before["id_token"], after["id_token"]):
        assert (await verify_id_token(idp, token))["oid"] == ADELE_OID


async def test_emergency_rotation_retires_the_old_key(idp: DevIdpHarness) -> None:
    _, before = await idp.sign_in()
    status, rotated = await idp.control("keys/rotate", retire_old="1")
    assert status == 200 and rotated["published"] == [rotated["kid"]]
    assert await kids(idp) == [rotated["kid"]]
    assert kid_of(before["id_token"]) not in await kids(idp)


# Counters


async def test_stats_count_fetches_and_grants(idp: DevIdpHarness) -> None:
    discovery = "v2.0/.well-known/openid-configuration"
    await idp.get_json(idp.url(CONTOSO_ID, discovery))
    await idp.get_json(idp.url("organizations", discovery))
    await idp.get_json(idp.url(FABRIKAM_ID, discovery), appid=CONTOSO_CLIENT)
    await idp.get_json(idp.url(CONTOSO_ID, "discovery/v2.0/keys"))
    await idp.get_json(idp.url(CONTOSO_ID, "discovery/v2.0/keys"), appid=CONTOSO_CLIENT)
    _, body = await idp.sign_in(scope="openid offline_access")
    await idp.token({"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    await idp.token({"grant_type": "refresh_token", "refresh_token": "unknown"})  # refused, still counted
    stats = await idp.get_json(f"{idp.base}/_devidp/stats")
    assert stats == {
        "discovery": 3,
        "jwks": 2,
        "token": {"authorization_code": 1, "refresh_token": 2},
        "graph": 0,
    }


# Runtime user edits


async def test_removed_role_vanishes_at_the_next_refresh(idp: DevIdpHarness) -> None:
    shared_user = idp.config.tenants[0].users[0]
    _, body = await idp.sign_in(scope="openid offline_access")
    assert (await verify_id_token(idp, body["id_token"]))["roles"] == ["Wiki.Admin"]

    status, view = await idp.control(f"users/{ADELE_OID}", {"roles": [], "name": "Adele V.", "groups": []})
    assert status == 200
    assert (view["tenant_id"], view["roles"], view["name"]) == (CONTOSO_ID, [], "Adele V.")

    refresh = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    status, body = await idp.token(refresh)
    claims = await verify_id_token(idp, body["id_token"])
    assert "roles" not in claims and "groups" not in claims and claims["name"] == "Adele V."
    # The IdP's directory got a new record; the object the test built the directory from is untouched.
    assert shared_user.roles == ["Wiki.Admin"] and idp.config.tenants[0].users[0] is not shared_user


async def test_token_fault_set_at_runtime_applies_to_the_next_token(idp: DevIdpHarness) -> None:
    status, view = await idp.control(f"users/{ADELE_OID.upper()}", {"token_fault": "missing_oid"})
    assert status == 200 and view["token_fault"] == "missing_oid"
    _, body = await idp.sign_in()
    assert "oid" not in jwt.decode(body["id_token"], options={"verify_signature": False})
    status, _ = await idp.control(f"users/{ADELE_OID}", {"token_fault": None})
    _, body = await idp.sign_in()
    assert (await verify_id_token(idp, body["id_token"]))["oid"] == ADELE_OID


async def test_user_edits_are_validated_all_or_nothing(idp: DevIdpHarness) -> None:
    status, body = await idp.control(
        f"users/{ADELE_OID}",
        {"roles": "Wiki.Admin", "token_fault": "nope", "authorize_error": 1, "username": "x", "name": "ok"},
    )
    assert status == 400 and body["error"] == "invalid_request"
    assert [p.split(":")[0] for p in body["problems"]] == [
        "roles",
        "token_fault",
        "authorize_error",
        "username",
    ]
    assert idp.config.tenants[0].users[0].name == "Adele Vance"  # nothing applied
    status, body = await idp.control(f"users/{ADELE_OID}", ["not", "an", "object"])
    assert status == 400
    status, body = await idp.control("users/00000000-0000-4000-8000-000000000000", {"roles": []})
    assert status == 404 and body["error"] == "not_found"


# App-specific signing keys


async def test_app_specific_key_is_published_only_with_appid(start: Starter) -> None:
    config = make_config()
    contoso = config.tenants[0]
    contoso.clients[0] = dataclasses.replace(contoso.clients[0], app_specific_keys=True)
    async with start(config) as idp:
        _, body = await idp.sign_in()
        kid = kid_of(body["id_token"])
        assert kid not in await kids(idp)
        assert kid not in await kids(idp, "organizations")
        assert kid in await kids(idp, appid=CONTOSO_CLIENT)
        assert kid in await kids(idp, FABRIKAM_ID, appid=CONTOSO_CLIENT)

        # Discovery asked with ?appid= points the relying party at the right keys.
        doc = await idp.get_json(
            idp.url(CONTOSO_ID, "v2.0/.well-known/openid-configuration"), appid=CONTOSO_CLIENT
        )
        assert doc["jwks_uri"] == f"{idp.base}/{CONTOSO_ID}/discovery/v2.0/keys?appid={CONTOSO_CLIENT}"
        key = next(
            k for k in jwt.PyJWKSet.from_dict(await idp.get_json(doc["jwks_uri"])).keys if k.key_id == kid
        )
        claims = jwt.decode(
            body["id_token"], key, algorithms=["RS256"], audience=CONTOSO_CLIENT, issuer=doc["issuer"]
        )
        assert claims["oid"] == ADELE_OID
        # The access token (for Graph) is still signed with the shared keys.
        assert kid_of(body["access_token"]) in await kids(idp)


async def test_other_apps_keep_the_shared_keys(start: Starter) -> None:
    config = make_config()
    config.tenants[0].clients[0].app_specific_keys = True
    async with start(config) as idp:
        fabrikam = config.tenants[1].clients[0].client_id
        assert await kids(idp, appid=fabrikam) == await kids(idp)

"""``token_fault``: each broken ID token is really broken that way, and a correct validator refuses it."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from devidp import DevIdpConfig
from devidp.model import is_guid
from tests.devidp.conftest import Starter
from tests.devidp.harness import (
    ALEX_OID,
    CONTOSO_CLIENT,
    CONTOSO_ID,
    FABRIKAM_ID,
    DevIdpHarness,
    make_config,
    published_keys,
    verify_id_token,
)

ALEX = "alex@contoso.example"


def faulty(fault: str) -> DevIdpConfig:
    """The test directory with Alex's ID tokens broken by ``fault``."""
    config = make_config()
    config.tenants[0].users[1].token_fault = fault
    return config


async def issued(idp: DevIdpHarness) -> tuple[dict[str, str], str, dict[str, Any]]:
    """Alex signs in: the authorize parameters, the ID token and its claims read without verification."""
    params, body = await idp.sign_in(ALEX)
    token = body["id_token"]
    return params, token, jwt.decode(token, options={"verify_signature": False})


async def signature_key(idp: DevIdpHarness, token: str) -> jwt.PyJWK:
    """The published key the token's header names (it must exist)."""
    kid = jwt.get_unverified_header(token)["kid"]
    return next(k for k in (await published_keys(idp)).keys if k.key_id == kid)


async def test_wrong_aud(start: Starter) -> None:
    async with start(faulty("wrong_aud")) as idp:
        _, token, claims = await issued(idp)
        assert claims["aud"] != CONTOSO_CLIENT and is_guid(claims["aud"])
        key = await signature_key(idp, token)
        jwt.decode(token, key, algorithms=["RS256"], audience=claims["aud"])  # the signature is genuine
        with pytest.raises(jwt.InvalidAudienceError):
            jwt.decode(token, key, algorithms=["RS256"], audience=CONTOSO_CLIENT)


async def test_wrong_iss(start: Starter) -> None:
    async with start(faulty("wrong_iss")) as idp:
        _, token, claims = await issued(idp)
        made_up = claims["iss"].removeprefix(f"{idp.base}/").removesuffix("/v2.0")
        assert is_guid(made_up) and made_up not in (CONTOSO_ID, FABRIKAM_ID)
        assert claims["tid"] == CONTOSO_ID
        with pytest.raises(jwt.InvalidIssuerError):
            await verify_id_token(idp, token)


async def test_other_tid_is_a_genuine_token_of_the_other_tenant(start: Starter) -> None:
    async with start(faulty("other_tid")) as idp:
        _, token, claims = await issued(idp)
        assert (claims["tid"], claims["iss"]) == (FABRIKAM_ID, idp.issuer(FABRIKAM_ID))
        # Valid by Fabrikam's metadata, so only a tenant-bound validator refuses it.
        assert (await verify_id_token(idp, token, FABRIKAM_ID))["oid"] == ALEX_OID
        with pytest.raises(jwt.InvalidIssuerError):
            await verify_id_token(idp, token, CONTOSO_ID)


async def test_other_tid_with_a_single_tenant_is_made_up(start: Starter) -> None:
    config = faulty("other_tid")
    del config.tenants[1]
    async with start(config) as idp:
        _, _, claims = await issued(idp)
        assert is_guid(claims["tid"]) and claims["tid"] != CONTOSO_ID
        assert claims["iss"] == idp.issuer(claims["tid"])


async def test_expired(start: Starter) -> None:
    async with start(faulty("expired")) as idp:
        _, token, claims = await issued(idp)
        now = int(idp.clock())
        assert (claims["iat"], claims["nbf"], claims["exp"]) == (now - 7200, now - 7200, now - 3600)
        with pytest.raises(jwt.ExpiredSignatureError):
            await verify_id_token(idp, token)


async def test_not_yet_valid(start: Starter) -> None:
    async with start(faulty("not_yet_valid")) as idp:
        _, token, claims = await issued(idp)
        now = int(idp.clock())
        assert (claims["iat"], claims["nbf"], claims["exp"]) == (now + 3600, now + 3600, now + 7200)
        with pytest.raises(jwt.ImmatureSignatureError):
            await verify_id_token(idp, token)


async def test_bad_signature(start: Starter) -> None:
    async with start(faulty("bad_signature")) as idp:
        _, token, claims = await issued(idp)
        assert claims["oid"] == ALEX_OID  # the claims are fine, and the kid is published
        key = await signature_key(idp, token)
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(token, key, algorithms=["RS256"], audience=CONTOSO_CLIENT)


async def test_unknown_kid(start: Starter) -> None:
    async with start(faulty("unknown_kid")) as idp:
        _, token, _ = await issued(idp)
        header = jwt.get_unverified_header(token)
        keys = (await published_keys(idp)).keys
        assert header["alg"] == "RS256" and header["kid"] not in {k.key_id for k in keys}
        for key in keys:
            with pytest.raises(jwt.InvalidSignatureError):
                jwt.decode(token, key, algorithms=["RS256"], audience=CONTOSO_CLIENT)


async def test_alg_none(start: Starter) -> None:
    async with start(faulty("alg_none")) as idp:
        _, token, claims = await issued(idp)
        assert token.endswith(".") and claims["oid"] == ALEX_OID
        header = jwt.get_unverified_header(token)
        assert header["alg"] == "none"
        key = await signature_key(idp, token)  # it names a published kid
        with pytest.raises(jwt.InvalidAlgorithmError):
            jwt.decode(token, key, algorithms=["RS256"], audience=CONTOSO_CLIENT)


async def test_hs256_keyed_with_the_published_public_key(start: Starter) -> None:
    async with start(faulty("hs256_public_key")) as idp:
        _, token, _ = await issued(idp)
        header = jwt.get_unverified_header(token)
        assert header["alg"] == "HS256"
        key = await signature_key(idp, token)
        with pytest.raises(jwt.InvalidAlgorithmError):
            jwt.decode(token, key, algorithms=["RS256"], audience=CONTOSO_CLIENT)
        # It is the algorithm-confusion forgery: HMAC-SHA256 keyed with the public key's PEM.
        pem = key.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        signing_input, _, signature = token.rpartition(".")
        expected = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        assert jwt.utils.base64url_decode(signature) == expected


async def test_missing_oid(start: Starter) -> None:
    async with start(faulty("missing_oid")) as idp:
        _, token, _ = await issued(idp)
        claims = await verify_id_token(idp, token)  # validly signed, but without the stable user key
        assert "oid" not in claims and claims["tid"] == CONTOSO_ID and claims["sub"]


async def test_nonce_mismatch(start: Starter) -> None:
    async with start(faulty("nonce_mismatch")) as idp:
        params, token, _ = await issued(idp)
        claims = await verify_id_token(idp, token)
        assert claims["nonce"] and claims["nonce"] != params["nonce"]


async def test_faults_apply_on_refresh_and_leave_the_access_token_alone(start: Starter) -> None:
    async with start(faulty("expired")) as idp:
        _, body = await idp.sign_in(ALEX, scope="openid offline_access")
        status, refreshed = await idp.token(
            {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
        )
        assert status == 200
        with pytest.raises(jwt.ExpiredSignatureError):
            await verify_id_token(idp, refreshed["id_token"])
        access = jwt.decode(refreshed["access_token"], options={"verify_signature": False})
        assert access["exp"] > idp.clock()


async def test_other_users_are_unaffected(start: Starter) -> None:
    async with start(faulty("bad_signature")) as idp:
        _, body = await idp.sign_in("adele@contoso.example")
        assert (await verify_id_token(idp, body["id_token"]))["tid"] == CONTOSO_ID

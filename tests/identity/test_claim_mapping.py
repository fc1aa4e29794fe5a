"""Identity headers from expressions: encoding (no claim can forge a header) and kept-claim bounds."""

from __future__ import annotations

import json

import pytest

from broker.config.schema import RouteConfig
from broker.identity.claim_keeping import MAX_CLAIM_CHARS, MAX_KEPT_BYTES, kept_claims
from broker.identity.claim_mapping import encode_header_value, route_headers
from broker.sessions.model import Session


@pytest.mark.parametrize(
    ("value", "mode", "expected"),
    [
        ("CONTOSO\\adele", "rfc8187", "CONTOSO\\adele"),
        ("Zoë", "rfc8187", "UTF-8''Zo%C3%AB"),
        ("Zoë", "utf8", "Zoë"),
        ("a\r\nX-Admin: 1", "rfc8187", "UTF-8''a%0D%0AX-Admin%3A%201"),
        ("a\r\nX-Admin: 1", "utf8", None),
        ("a\x00b", "utf8", None),
        ("tab\there", "utf8", None),
        ("UTF-8''%61dmin", "utf8", "UTF-8''UTF-8%27%27%2561dmin"),
        ("utf-8''%61dmin", "rfc8187", "UTF-8''utf-8%27%27%2561dmin"),
        ("x" * 17, "rfc8187", None),
    ],
)
def test_header_values_are_encoded_or_refused(value: str, mode: str, expected: str | None) -> None:
    assert encode_header_value(value, mode, 16 if len(value) == 17 else 1024) == expected


def test_route_headers_replace_company_defaults_of_the_same_name() -> None:
    route = RouteConfig(host="h", upstream="http://u", headers={"x-user": "claims.upn | strip_domain"})
    compiled = route_headers(route, {"X-User": "email", "X-Employee": "claims.employeeid"})
    session = Session(
        login_code="c", tid="t", oid="o", email="e@x", claims={"upn": "adele@x", "employeeid": 7}
    )
    assert compiled.values(session) == {"x-user": "adele", "X-Employee": "7"}


def test_kept_claims_are_those_named_bounded_and_never_token_material() -> None:
    claims = {
        "upn": "a@b",
        "extn.costCenter": "CC",
        "extn.big": "x" * 1000,
        "nonce": "n",
        "xms_pl": ["fr"] * 100,
        "address": {"street": "x"},
        "other": "not asked",
    }
    kept = kept_claims(["upn", "extn.*", "nonce", "xms_pl", "address"], claims)
    assert kept["upn"] == "a@b" and kept["extn.costCenter"] == "CC"
    assert kept["extn.big"] == "x" * MAX_CLAIM_CHARS
    assert "nonce" not in kept and "address" not in kept and "other" not in kept
    assert len(kept["xms_pl"]) == 32


def test_kept_claims_stay_within_the_byte_budget() -> None:
    claims = {f"extn.c{i}": "v" * 200 for i in range(20)}
    kept = kept_claims(["extn.*"], claims)
    assert len(json.dumps(kept, separators=(",", ":")).encode()) <= MAX_KEPT_BYTES
    assert list(kept) == [f"extn.c{i}" for i in range(len(kept))]  # the first ones listed are kept

"""The dev IdP's grant store: expired grants answer "expired" for a while, then are pruned, and pruning
costs the same after a million sign-ins as after one."""

from __future__ import annotations

import pytest

from devidp.store import (
    _CODE_MEMORY,
    CODE_LIFETIME,
    CodeGrant,
    GrantExpired,
    GrantStore,
    GrantUnknown,
)


def grant() -> CodeGrant:
    return CodeGrant("t", "c", "http://r", "challenge", "nonce", ("openid",), "oid", "sid")


def test_expired_codes_answer_expired_then_are_forgotten_oldest_first() -> None:
    now = [0.0]
    store = GrantStore(lambda: now[0])
    old = [store.issue_code(grant()) for _ in range(3)]
    now[0] = CODE_LIFETIME + 1
    with pytest.raises(GrantExpired):
        store.redeem_code(old[0])
    now[0] = CODE_LIFETIME + _CODE_MEMORY + 1
    fresh = store.issue_code(grant())  # issuing prunes what expired more than the memory ago
    for code in old:
        with pytest.raises(GrantUnknown):
            store.redeem_code(code)
    assert store.redeem_code(fresh).oid == "oid"
    assert list(store._codes) == [fresh]


READS = {"expires_at": 0}


class CountedGrant(CodeGrant):
    """A grant that counts how often its expiry is read (by pruning)."""

    def __getattribute__(self, name: str) -> object:
        if name == "expires_at":
            READS["expires_at"] += 1
        return super().__getattribute__(name)


def test_pruning_stops_at_the_first_live_grant() -> None:
    """Only the expired front is looked at: a store full of live grants is not scanned per issued code."""
    now = [0.0]
    store = GrantStore(lambda: now[0])
    counted = CountedGrant("t", "c", "http://r", "challenge", "nonce", ("openid",), "oid", "sid")
    for _ in range(1000):
        store.issue_code(counted)
    READS["expires_at"] = 0
    store.issue_code(counted)
    assert READS["expires_at"] <= 2

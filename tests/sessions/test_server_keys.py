"""Server keys: rotation without logging everyone out, and fail-closed configuration."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from broker.config.load import load_config_text
from broker.errors import ConfigError
from broker.sessions.manager import SessionManager, user_index
from broker.sessions.model import Session
from broker.sessions.redis_store import RedisStore
from broker.sessions.sealing import ServerKeys
from broker.sessions.store import SessionStore
from tests.support.stack import ADELE, CONTOSO_TID, new_session_key

HOUR = 3600.0


def manager(store: SessionStore, keys: ServerKeys) -> SessionManager:
    return SessionManager(store, 8 * HOUR, 24 * HOUR, keys=keys)


async def test_rotation_first_key_seals_all_open_and_dropping_a_key_ends_its_sessions(
    fresh_redis_url: str,
) -> None:
    store = RedisStore(fresh_redis_url)
    a, b = ServerKeys.random(), ServerKeys.random()
    rotated = ServerKeys([b.keys[0], a.keys[0]])
    try:
        now = time.time()
        ticket = await manager(store, a).create(Session("contoso", CONTOSO_TID, ADELE.oid), now)
        # [B, A]: A's session still opens, is listed and revocable by user; a change is sealed with B.
        loaded = await manager(store, rotated).load(ticket, now + 120)  # due for a last-seen write
        assert loaded is not None
        stored = await manager(store, rotated).read(loaded[0])
        assert stored is not None
        assert stored.header[1:5] == ServerKeys.key_id(b.keys[0])
        assert len(await manager(store, rotated).list_index(user_index(CONTOSO_TID, ADELE.oid))) == 1
        # [B] only: sessions sealed with A alone end (this one was resealed with B, so make a new A one).
        old = await manager(store, a).create(Session("contoso", CONTOSO_TID, ADELE.oid), now)
        assert await manager(store, b).load(old, now) is None
        assert await manager(store, b).load(ticket, now + 121) is not None
        assert await manager(store, rotated).revoke_index(user_index(CONTOSO_TID, ADELE.oid)) == 2
    finally:
        await store.close()


CONFIG = """
server: {{public_url: "https://gw.example.com"}}
sessions: {sessions}
signing: {{keys: [k.pem]}}
tenants:
  contoso: {{display_name: C, tenant_id: 00000000-0000-0000-0000-000000000001,
             client_id: 11111111-1111-1111-1111-111111111111, client_secret: s}}
routes: [{{host: wiki.example.com, upstream: "http://10.0.0.5"}}]
"""


def load(sessions: str, tmp_path: Path) -> None:
    load_config_text(CONFIG.format(sessions=sessions), "t.yaml", tmp_path, {}, file_exists=lambda _: True)


def test_a_redis_store_without_server_keys_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="secret_keys: required with a Redis store"):
        load('{store: "redis://r:6379/0"}', tmp_path)
    load("{store: memory}", tmp_path)  # a random per-process key


@pytest.mark.parametrize("bad", ["c2hvcnQ=", "not base64!", ""])
def test_server_keys_must_be_base64_of_32_bytes(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 32 random bytes"):
        load(f'{{store: "redis://r:6379/0", secret_keys: ["{bad}"]}}', tmp_path)


def test_server_keys_from_files(tmp_path: Path) -> None:
    (tmp_path / "k1").write_text(new_session_key() + "\n")
    (tmp_path / "k2").write_text(new_session_key())
    load('{store: "redis://r:6379/0", secret_keys_file: [k1, k2]}', tmp_path)

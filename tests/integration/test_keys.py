"""API keys: only their hash is stored; `conveyor keys revoke` locks a key out (within the
API's key cache time); `keys list` shows prefixes, never keys."""

from __future__ import annotations

import subprocess
import time
import uuid

import httpx
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from conveyor_core.db.models import ApiKey
from conveyor_core.keys import display_prefix, hash_api_key
from conveyor_core.settings import Settings
from tests.helpers import assert_eventually
from tests.integration.conftest import create_key, run_cli
from tests.integration.uploads import auth


async def test_a_revoked_key_is_refused_and_keys_are_never_stored(
    stack: Settings, api: httpx.AsyncClient, sessions: sessionmaker[Session]
) -> None:
    tenant = f"revoke-{uuid.uuid4().hex[:8]}"
    key = create_key(stack, tenant)
    other = create_key(stack, tenant)
    assert (await api.get("/v1/files", headers=auth(key))).status_code == 200

    with sessions() as session:
        stored = session.execute(select(ApiKey).where(ApiKey.prefix == display_prefix(key)))
        [row] = stored.scalars().all()
        assert row.key_hash == hash_api_key(key) and row.revoked_at is None
        dump = session.execute(text("SELECT * FROM api_key")).all()
    assert key not in repr(dump) and other not in repr(dump)

    listed = run_cli(stack, "keys", "list", "--tenant", tenant).stdout
    assert display_prefix(key) in listed and key not in listed and "active" in listed

    revoked = run_cli(stack, "keys", "revoke", display_prefix(key))
    assert revoked.stdout.strip() == f"revoked {display_prefix(key)}"
    started = time.monotonic()

    async def refused() -> None:
        answer = await api.get("/v1/files", headers=auth(key))
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "invalid_api_key"

    await assert_eventually(refused, timeout=stack.api_key_cache_seconds + 5)
    assert time.monotonic() - started <= stack.api_key_cache_seconds + 5
    # The tenant's other key still works, and revoking is idempotent.
    assert (await api.get("/v1/files", headers=auth(other))).status_code == 200
    assert "revoked" in run_cli(stack, "keys", "list", "--tenant", tenant).stdout
    assert run_cli(stack, "keys", "revoke", key).returncode == 0


def test_revoking_an_unknown_key_fails_clearly(stack: Settings) -> None:
    try:
        run_cli(stack, "keys", "revoke", "cvk_nothere")
    except subprocess.CalledProcessError as e:
        assert e.returncode == 1 and "no key has" in e.stderr
    else:
        raise AssertionError("revoking an unknown key succeeded")

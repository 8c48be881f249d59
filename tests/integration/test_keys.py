"""API keys: only their hash is stored; `conveyor keys revoke` locks a key out at once, though
the API caches keys (a trigger's NOTIFY drops the cache, also after Postgres restarted);
`keys list` shows prefixes, never keys."""

from __future__ import annotations

import json
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
from workers.stack import manage


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

    # The key's tenancy was cached (for 600 s here); the revocation's NOTIFY drops it.
    await assert_eventually(refused, timeout=3)
    assert time.monotonic() - started <= 3
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


async def _listening(stack: Settings) -> None:
    try:
        async with httpx.AsyncClient() as scraper:
            url = f"http://{stack.host}:{stack.api_metrics_port}/metrics"
            metrics = (await scraper.get(url)).text
    except httpx.TransportError as e:
        raise AssertionError(str(e)) from e
    assert "conveyor_api_key_cache_listening 1.0" in metrics.splitlines()


async def test_revocation_is_heard_again_after_postgres_restarts(
    stack: Settings, api: httpx.AsyncClient
) -> None:
    await assert_eventually(lambda: _listening(stack), timeout=10)
    manage.supervisorctl(stack, "restart", "postgres")
    # The listener reconnects by itself; until then keys are looked up on every request.
    await assert_eventually(lambda: _listening(stack), timeout=30)
    key = create_key(stack, f"relisten-{uuid.uuid4().hex[:8]}")

    async def accepted() -> None:
        answer = await api.get("/v1/files", headers=auth(key))
        assert answer.status_code == 200, answer.text  # a 503 while the pool reconnects

    await assert_eventually(accepted, timeout=30)  # and now the key is cached
    run_cli(stack, "keys", "revoke", key)

    async def refused() -> None:
        answer = await api.get("/v1/files", headers=auth(key))
        assert answer.status_code == 401, answer.text

    await assert_eventually(refused, timeout=3)


def test_keys_commands_answer_json_for_scripts(stack: Settings) -> None:
    tenant = f"json-{uuid.uuid4().hex[:8]}"

    created = json.loads(run_cli(stack, "keys", "create", "--tenant", tenant, "--json").stdout)
    key = created["key"]
    assert created == {"tenant": tenant, "prefix": display_prefix(key), "key": key}
    assert create_key(stack, tenant)  # a second key of the tenant, not revoked below

    listed = json.loads(run_cli(stack, "keys", "list", "--tenant", tenant, "--json").stdout)
    assert [k["prefix"] for k in listed][0] == created["prefix"] and len(listed) == 2
    assert {k["tenant"] for k in listed} == {tenant}
    assert all(k["revoked_at"] is None and k["created_at"] for k in listed)
    assert key not in json.dumps(listed)

    revoked = json.loads(run_cli(stack, "keys", "revoke", key, "--json").stdout)
    assert revoked["prefix"] == created["prefix"] and revoked["revoked_at"]
    after = json.loads(run_cli(stack, "keys", "list", "--tenant", tenant, "--json").stdout)
    assert [k["revoked_at"] is not None for k in after] == [True, False]

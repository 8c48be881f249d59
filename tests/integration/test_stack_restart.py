"""Down and up again: everything stops, state survives, the chain works again.

Named to run after the other integration tests, since it restarts the shared stack.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid

import httpx

from conveyor_core.settings import Settings
from tests.helpers import assert_eventually
from tests.integration.uploads import auth, declare, put, sample_bytes, wait_for_status
from workers.stack import manage
from workers.stack.environment import settings_env


async def test_state_survives_down_and_up(
    stack: Settings, api: httpx.AsyncClient, key_a: str
) -> None:
    content = sample_bytes(2048)
    before = await declare(api, key_a, content)
    assert (await put(before, content)).status_code == 200
    await wait_for_status(api, key_a, before["file_id"], "ready")
    later = sample_bytes(2048)
    waiting = await declare(api, key_a, later)  # not uploaded yet when the stack stops

    manage.down(stack)
    assert manage.status(stack) == {}
    leftovers = subprocess.run(
        ["pgrep", "-f", str(stack.state_path)], capture_output=True, text=True
    ).stdout.split()
    assert leftovers == []

    manage.up(stack)
    await wait_for_status(api, key_a, before["file_id"], "ready")
    # A workflow that was waiting before the restart picks up its upload afterwards.
    assert (await put(waiting, later)).status_code == 200
    after = await wait_for_status(api, key_a, waiting["file_id"], "ready")
    assert after["sha256"] == hashlib.sha256(later).hexdigest()
    kept = await api.get(f"/v1/files/{before['file_id']}", headers=auth(key_a))
    assert kept.json()["sha256"] == hashlib.sha256(content).hexdigest()


async def test_a_dependency_down_is_a_503_not_a_500(
    stack: Settings, api: httpx.AsyncClient, key_a: str
) -> None:
    manage.supervisorctl(stack, "stop", "postgres")
    try:
        response = await api.get(f"/v1/files/{uuid.uuid4()}", headers=auth(key_a))
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "dependency_unavailable"
        assert response.headers["retry-after"] == "5"
        ready = await api.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["postgres"] != "ok"
    finally:
        manage.supervisorctl(stack, "start", "postgres")

    async def recovered() -> None:
        assert (await api.get("/readyz")).status_code == 200

    await assert_eventually(recovered, timeout=30)
    content = sample_bytes(512)
    created = await declare(api, key_a, content)
    assert (await put(created, content)).status_code == 200
    await wait_for_status(api, key_a, created["file_id"], "ready")


def test_conveyor_status_names_each_component_and_what_is_down(stack: Settings) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(settings_env(stack))
    command = [sys.executable, "-m", "workers.cli", "status", "--json"]
    up = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stdout + up.stderr
    components = {c["name"]: c for c in json.loads(up.stdout)}
    assert set(components) == {
        "api",
        "postgres",
        "temporal",
        "object_store",
        "nats",
        "clamd",
        "edge",
    }
    assert all(c["up"] and c["version"] for c in components.values()), components
    assert components["clamd"]["version"].startswith("ClamAV")

    manage.supervisorctl(stack, "stop", "clamd")
    try:
        down = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    finally:
        manage.supervisorctl(stack, "start", "clamd")
    assert down.returncode == 1
    states = {c["name"]: c["up"] for c in json.loads(down.stdout)}
    assert states["clamd"] is False and states["postgres"] is True

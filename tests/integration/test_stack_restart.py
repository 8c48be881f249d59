"""Down and up again: everything stops, state survives, the chain works again.

Named to run after the other integration tests, since it restarts the shared stack.
"""

from __future__ import annotations

import hashlib
import subprocess

import httpx

from conveyor_core.settings import Settings
from tests.integration.uploads import auth, declare, put, sample_bytes, wait_for_status
from workers.stack import manage


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

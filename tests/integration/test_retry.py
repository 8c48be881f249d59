"""POST /v1/files/{id}/retry on the real stack: a file failed by a scanner outage goes
through once the scanner is back, a ready file re-runs its failed thumbnails, and what cannot
be retried says why."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from conveyor_client import Client as ConveyorClient
from conveyor_core.db.models import Blob, File, Upload
from conveyor_core.settings import Settings
from tests.helpers import assert_eventually, ingest_replayer
from tests.integration import samples
from tests.integration.inspection import head_status, scheduled_activities
from tests.integration.test_file_events import read_stream
from tests.integration.test_limits import limited_tenant
from tests.integration.uploads import (
    auth,
    declare,
    sample_bytes,
    upload,
    wait_for_status,
    wait_until_terminal,
)
from workers.stack import manage


def _error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


async def test_retry_after_the_scanner_was_down_reaches_ready_for_each_holder(
    api: httpx.AsyncClient,
    key_a: str,
    key_b: str,
    stack: Settings,
    temporal: Client,
    sessions: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    # Two tenants upload the same bytes while clamd is down: one blob, both files failed.
    content = sample_bytes(700)
    sha = hashlib.sha256(content).hexdigest()
    manage.supervisorctl(stack, "stop", "clamd")
    try:
        a, b = await asyncio.gather(
            upload(api, key_a, content, content_type="text/plain"),
            upload(api, key_b, content, content_type="text/plain"),
        )
    finally:
        manage.supervisorctl(stack, "start", "clamd")
    for failed in (a, b):
        assert failed["status"] == "failed", failed
        assert failed["status_detail"].startswith("scan: scanner error"), failed
    with sessions() as session:
        blob = session.get(Blob, sha)
        assert blob is not None and blob.status == "failed"
    first_run = (await temporal.get_workflow_handle(a["workflow_id"]).describe()).run_id

    # Only its tenant, with a key, may retry it.
    path = f"/v1/files/{a['id']}/retry"
    assert _error(await api.post(path)) == (401, "missing_api_key")
    assert _error(await api.post(path, headers=auth(key_b))) == (404, "file_not_found")
    missing = await api.post(f"/v1/files/{uuid.uuid4()}/retry", headers=auth(key_a))
    assert _error(missing) == (404, "file_not_found")

    # Two retries at once: one wins, the other is told a retry is under way.
    first, second = await asyncio.gather(
        api.post(path, headers=auth(key_a)), api.post(path, headers=auth(key_a))
    )
    accepted, refused = (first, second) if first.status_code == 202 else (second, first)
    assert accepted.status_code == 202, accepted.text
    assert _error(refused) == (409, "not_retryable")
    body = accepted.json()
    assert body["status"] == "processing" and body["workflow_id"] == a["workflow_id"]
    assert body["stages"]["scan"]["status"] == "pending"
    assert body["stages"]["verify"]["status"] == "succeeded"

    # While it runs, the file is the new run's progress query, stages as the retry left them.
    running = (await api.get(f"/v1/files/{a['id']}", headers=auth(key_a))).json()
    if running["status"] == "processing":
        assert running["stages"]["verify"]["status"] == "succeeded", running

    ready = await wait_for_status(api, key_a, a["id"], "ready", timeout=60)
    assert ready["sha256"] == sha and ready["status_detail"] is None
    assert ready["stages"]["scan"]["status"] == "succeeded"
    assert ready["stages"]["scan"]["detail"] == "clean"
    assert ready["ready_at"] is not None
    # A new run of the same workflow id, which skipped the wait, verify and claim.
    handle = temporal.get_workflow_handle(a["workflow_id"])
    assert (await handle.describe()).run_id != first_run
    activities = await scheduled_activities(temporal, a["workflow_id"])
    assert activities[0] == "claim_retry" and "stage_scan" in activities
    assert "seal_and_verify" not in activities and "claim_blob" not in activities
    replayed = await ingest_replayer().replay_workflow(await handle.fetch_history())
    assert replayed.replay_failure is None
    # The file's events go on after the first run's, and end with its new status.
    events = await read_stream(api, key_a, a["id"])
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    statuses = [(e.id, e.data["status"]) for e in events if e.name == "status"]
    assert [s for _, s in statuses[-3:]] == ["failed", "processing", "ready"]
    after_failure = await read_stream(api, key_a, a["id"], last_id=statuses[-3][0])
    assert after_failure[0].data["status"] == "processing" and after_failure[-1] == events[-1]
    # The SDK follows the whole history past the first run's `failed`, to the file's status.
    with ConveyorClient(stack.api_url, key_a, state_dir=tmp_path) as client:
        followed = list(client.events(a["id"]))
    assert [e.seq for e in followed] == [e.id for e in events]
    assert followed[-1].status == "ready"

    # The other tenant's file shares the blob: untouched until retried, then it reuses the
    # outcome instead of scanning again.
    still = (await api.get(f"/v1/files/{b['id']}", headers=auth(key_b))).json()
    assert still["status"] == "failed" and still["status_detail"] == b["status_detail"]
    assert (await api.post(f"/v1/files/{b['id']}/retry", headers=auth(key_b))).status_code == 202
    reused = await wait_for_status(api, key_b, b["id"], "ready", timeout=30)
    assert reused["stages"]["scan"]["detail"] == "clean"
    assert "stage_scan" not in await scheduled_activities(temporal, b["workflow_id"])
    with sessions() as session:
        blob = session.get(Blob, sha)
        assert blob is not None and blob.status == "ready"

    # Nothing failed any more: nothing to retry.
    again = await api.post(path, headers=auth(key_a))
    assert _error(again) == (409, "not_retryable")


async def test_retry_ready_file_reruns_its_failed_thumbnails_for_every_holder(
    api: httpx.AsyncClient,
    key_a: str,
    key_b: str,
    stack: Settings,
    s3: Any,
    sessions: sessionmaker[Session],
) -> None:
    content = samples.text_image("RETRY THUMBS", size=(600, 200))
    sha = hashlib.sha256(content).hexdigest()
    mine = await upload(api, key_a, content, content_type="image/png")
    theirs = await upload(api, key_b, content, content_type="image/png")
    assert mine["status"] == theirs["status"] == "ready"
    # As a transient failure leaves it: the thumbnails stage failed, none recorded or stored.
    failed = {"status": "failed", "detail": "timed out", "duration_ms": 300000}
    with sessions() as session, session.begin():
        blob = session.get(Blob, sha)
        assert blob is not None
        keys = [t["key"] for t in blob.thumbnails]
        blob.stages = {**blob.stages, "thumbnails": failed}
        blob.thumbnails = []
        for file_id in (mine["id"], theirs["id"]):
            file = session.get(File, uuid.UUID(file_id))
            assert file is not None
            file.stages = {**file.stages, "thumbnails": failed}
    for key in keys:
        s3.delete_object(Bucket=stack.bucket, Key=key)

    response = await api.post(f"/v1/files/{mine['id']}/retry", headers=auth(key_a))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "ready" and body["stages"]["thumbnails"]["status"] == "pending"
    # Under way (stage pending) or done (nothing failed): not retried twice.
    busy = await api.post(f"/v1/files/{mine['id']}/retry", headers=auth(key_a))
    assert _error(busy) == (409, "not_retryable")

    async def thumbnails_back(key: str, file_id: str) -> dict[str, Any]:
        got = (await api.get(f"/v1/files/{file_id}", headers=auth(key))).json()
        assert got["status"] == "ready"
        assert got["stages"]["thumbnails"]["status"] == "succeeded", got["stages"]
        return got

    done = await assert_eventually(lambda: thumbnails_back(key_a, mine["id"]), timeout=60)
    assert sorted(t["size"] for t in done["thumbnails"]) == [256, 1024]
    assert done["stages"]["scan"] == mine["stages"]["scan"]  # only thumbnails ran again
    assert done["stages"]["ocr"] == mine["stages"]["ocr"]
    assert all(head_status(s3, stack.bucket, key) == 200 for key in keys)
    # Stages run once per blob: the other tenant's file shows the new outcome too.
    await thumbnails_back(key_b, theirs["id"])
    # The retry's events follow the first run's and end with the file's status again.
    events = await read_stream(api, key_a, mine["id"])
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert [(e.data["stage"], e.data["status"]) for e in events[-4:]] == [
        (None, "ready"),
        ("thumbnails", "running"),
        ("thumbnails", "succeeded"),
        (None, "ready"),
    ]


async def test_retry_refuses_what_cannot_be_retried(
    api: httpx.AsyncClient,
    key_a: str,
    stack: Settings,
    s3: Any,
    sessions: sessionmaker[Session],
) -> None:
    # Verify failed: its object was deleted, there are no bytes to run anything on.
    content = sample_bytes(300)
    declared = await declare(api, key_a, content, declare_sha256=False, size=400)
    with sessions() as session:
        row = session.get(Upload, uuid.UUID(declared["upload_id"]))
        assert row is not None
        object_key = row.object_key
    s3.put_object(Bucket=stack.bucket, Key=object_key, Body=content, ContentType="text/plain")
    await wait_for_status(api, key_a, declared["file_id"], "failed")
    gone = await api.post(f"/v1/files/{declared['file_id']}/retry", headers=auth(key_a))
    assert _error(gone) == (409, "bytes_gone")
    assert "upload it again" in gone.json()["error"]["message"]

    # Still waiting for its bytes.
    waiting = await declare(api, key_a, sample_bytes(50))
    early = await api.post(f"/v1/files/{waiting['file_id']}/retry", headers=auth(key_a))
    assert _error(early) == (409, "not_retryable")
    assert "awaiting_upload" in early.json()["error"]["message"]

    # Ready with nothing failed; then deleted.
    ready = await upload(api, key_a, sample_bytes(80), content_type="text/plain")
    assert ready["status"] == "ready"
    nothing = await api.post(f"/v1/files/{ready['id']}/retry", headers=auth(key_a))
    assert _error(nothing) == (409, "not_retryable")
    # A ready file's retry under way (its stage marked pending) holds off a delete.
    with sessions() as session, session.begin():
        file = session.get(File, uuid.UUID(ready["id"]))
        assert file is not None
        stages = file.stages
        file.stages = {**stages, "ocr": {"status": "pending", "detail": None}}
    busy = await api.delete(f"/v1/files/{ready['id']}", headers=auth(key_a))
    assert _error(busy) == (409, "file_not_finished")
    with sessions() as session, session.begin():
        session.execute(update(File).where(File.id == uuid.UUID(ready["id"])).values(stages=stages))
    assert (await api.delete(f"/v1/files/{ready['id']}", headers=auth(key_a))).status_code == 204
    deleted = await api.post(f"/v1/files/{ready['id']}/retry", headers=auth(key_a))
    assert _error(deleted) == (410, "file_deleted")

    # Failed with its blob recorded, but the object is no longer in the store.
    lost = await upload(api, key_a, sample_bytes(90), content_type="text/plain")
    with sessions() as session, session.begin():
        session.execute(
            update(File).where(File.id == uuid.UUID(lost["id"])).values(status="failed")
        )
        blob = session.get(Blob, lost["sha256"])
        assert blob is not None
        blob.status = "failed"
        s3.delete_object(Bucket=blob.bucket, Key=blob.object_key)
    vanished = await api.post(f"/v1/files/{lost['id']}/retry", headers=auth(key_a))
    assert _error(vanished) == (409, "bytes_gone")
    assert (await wait_until_terminal(api, key_a, lost["id"]))["status"] == "failed"


async def test_retry_of_a_failed_file_counts_against_the_quota_again(
    api: httpx.AsyncClient, stack: Settings, sessions: sessionmaker[Session]
) -> None:
    _, key = limited_tenant(stack, "--max-files", "1")
    first = await upload(api, key, sample_bytes(60), content_type="text/plain")
    # As a scanner outage leaves it (bytes kept, blob failed): it holds no room any more.
    with sessions() as session, session.begin():
        session.execute(
            update(File).where(File.id == uuid.UUID(first["id"])).values(status="failed")
        )
        session.execute(update(Blob).where(Blob.sha256 == first["sha256"]).values(status="failed"))
    second = await upload(api, key, sample_bytes(70), content_type="text/plain")
    assert second["status"] == "ready"

    refused = await api.post(f"/v1/files/{first['id']}/retry", headers=auth(key))
    assert _error(refused) == (413, "file_quota_exceeded")
    assert (await api.get(f"/v1/files/{first['id']}", headers=auth(key))).json()["status"] == (
        "failed"
    )
    assert (await api.delete(f"/v1/files/{second['id']}", headers=auth(key))).status_code == 204
    accepted = await api.post(f"/v1/files/{first['id']}/retry", headers=auth(key))
    assert accepted.status_code == 202, accepted.text
    await wait_for_status(api, key, first["id"], "ready", timeout=30)

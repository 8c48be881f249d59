"""One file through every real server: API -> store -> adapter -> JetStream -> relay -> workflow."""

from __future__ import annotations

import hashlib
import json
import uuid

import httpx
import nats
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from conveyor_core.db.models import Blob, File, Upload
from conveyor_core.events import ObjectCreated, to_s3_record
from conveyor_core.settings import Settings
from tests.helpers import assert_eventually, ingest_replayer
from tests.integration.uploads import auth, declare, put, sample_bytes, wait_for_status
from workers.stack import manage


async def test_upload_put_reaches_ready(
    api: httpx.AsyncClient, key_a: str, sessions: sessionmaker[Session]
) -> None:
    content = sample_bytes(1024)
    upload = await declare(api, key_a, content)
    assert upload["method"] == "PUT"
    assert set(upload["headers"]) == {"Content-Type", "Content-Length", "x-amz-checksum-sha256"}

    response = await put(upload, content)
    assert response.status_code == 200, response.text

    body = await wait_for_status(api, key_a, upload["file_id"], "ready")
    sha = hashlib.sha256(content).hexdigest()
    assert body["sha256"] == sha and body["size"] == 1024
    assert body["content_type"] == "text/plain"
    assert body["stages"]["verify"]["status"] == "succeeded"
    assert body["ready_at"] is not None and body["workflow_id"] == f"ingest-{upload['file_id']}"

    with sessions() as session:
        file = session.get(File, uuid.UUID(upload["file_id"]))
        upload_row = session.get(Upload, uuid.UUID(upload["upload_id"]))
        blob = session.get(Blob, sha)
        assert file is not None and upload_row is not None and blob is not None
        assert file.sha256 == sha and file.size == len(content)
        # Sent to the incoming key, then moved (sealed) out of every URL's reach.
        assert upload_row.object_key == f"incoming/{file.tenant_id}/{upload_row.id}"
        assert blob.object_key == upload_row.sealed_key
        # A random name: nothing in it says whose bytes these are.
        assert blob.object_key.startswith("sealed/") and str(file.tenant_id) not in blob.object_key
        assert str(upload_row.id) not in blob.object_key
        assert blob.size == len(content)
        # Bytes live only in the object store: no binary column, and the file's own
        # random marker appears in no row of any table.
        binary_columns = session.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND data_type IN ('bytea', 'oid')"
            )
        ).all()
        assert binary_columns == []
        marker = content.split(b"\n")[0].decode().split()[-1]
        for table in ("tenant", "api_key", "blob", "file", "upload"):
            hits = session.execute(
                text(f"SELECT count(*) FROM {table} t WHERE row_to_json(t)::text LIKE :m"),
                {"m": f"%{marker}%"},
            ).scalar_one()
            assert hits == 0, table


async def test_store_refuses_other_length_type_or_sha256(
    api: httpx.AsyncClient, key_a: str
) -> None:
    content = sample_bytes(512)
    upload = await declare(api, key_a, content)

    longer = await put(upload, content + b"x", **{"Content-Length": str(len(content) + 1)})
    assert longer.status_code == 403, longer.text
    other_type = await put(upload, content, **{"Content-Type": "image/png"})
    assert other_type.status_code == 403, other_type.text
    other_bytes = sample_bytes(512)  # same length, other content: the signed checksum differs
    corrupted = await put(upload, other_bytes)
    assert corrupted.status_code == 400 and "BadDigest" in corrupted.text

    tampered = dict(upload)
    tampered["url"] = upload["url"].replace(upload["upload_id"], str(uuid.uuid4()))
    assert (await put(tampered, content)).status_code == 403
    signature_at = upload["url"].index("X-Amz-Signature=") + len("X-Amz-Signature=")
    flipped = "0" if upload["url"][signature_at] != "0" else "1"
    tampered["url"] = upload["url"][:signature_at] + flipped + upload["url"][signature_at + 1 :]
    assert (await put(tampered, content)).status_code == 403

    # None of the refused bodies landed; the real one still goes through.
    assert (await put(upload, content)).status_code == 200
    await wait_for_status(api, key_a, upload["file_id"], "ready")


async def test_size_mismatch_without_declared_sha256_fails(
    api: httpx.AsyncClient, key_a: str, sessions: sessionmaker[Session], s3, stack: Settings
) -> None:  # type: ignore[no-untyped-def]
    content = sample_bytes(300)
    upload = await declare(api, key_a, content, declare_sha256=False, size=400)
    with sessions() as session:
        key = session.get(Upload, uuid.UUID(upload["upload_id"])).object_key  # type: ignore[union-attr]
    # A store that does not enforce the signed length: write the short object directly.
    s3.put_object(Bucket=stack.bucket, Key=key, Body=content, ContentType="text/plain")

    body = await wait_for_status(api, key_a, upload["file_id"], "failed")
    assert body["status_detail"] == "verify: size mismatch: declared 400 bytes, the object has 300"
    assert body["stages"]["verify"]["status"] == "failed"
    assert "size mismatch" in body["stages"]["verify"]["detail"]
    with sessions() as session:
        assert session.get(File, uuid.UUID(upload["file_id"])).sha256 is None  # type: ignore[union-attr]
        assert session.get(Blob, hashlib.sha256(content).hexdigest()) is None


async def _history_counts(temporal: Client, workflow_id: str) -> tuple[int, int, int]:
    """(signals received, verify activities scheduled, probe activities scheduled)."""
    history = await temporal.get_workflow_handle(workflow_id).fetch_history()
    signals = verifies = probes = 0
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            signals += 1
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            verifies += name == "seal_and_verify"
            probes += name == "probe_object"
    return signals, verifies, probes


async def test_duplicated_event_is_processed_once(
    api: httpx.AsyncClient,
    key_a: str,
    stack: Settings,
    temporal: Client,
    sessions: sessionmaker[Session],
) -> None:
    content = sample_bytes(700)
    upload = await declare(api, key_a, content)
    with sessions() as session:
        key = session.get(Upload, uuid.UUID(upload["upload_id"])).object_key  # type: ignore[union-attr]
    manage.supervisorctl(stack, "stop", "relay")
    try:
        assert (await put(upload, content)).status_code == 200
        # The adapter has queued the store's event; queue a second copy of it, as a store
        # that delivers twice would (a new message id, so JetStream keeps both).
        duplicate = ObjectCreated(
            bucket=stack.bucket, key=key, size=700, etag=None, sequencer="dup"
        )
        nc = await nats.connect(stack.nats_servers)
        try:
            await nc.jetstream().publish(
                stack.events_subject,
                json.dumps({"Records": [to_s3_record(duplicate, "2026-11-25T00:00:00Z")]}).encode(),
            )
        finally:
            await nc.close()
    finally:
        manage.supervisorctl(stack, "start", "relay")

    await wait_for_status(api, key_a, upload["file_id"], "ready")
    workflow_id = f"ingest-{upload['file_id']}"

    async def both_signals_arrived() -> None:
        signals, verifies, _ = await _history_counts(temporal, workflow_id)
        assert signals == 2 and verifies == 1

    await assert_eventually(both_signals_arrived, timeout=20)
    with sessions() as session:
        rows = session.execute(
            select(Blob).where(Blob.sha256 == hashlib.sha256(content).hexdigest())
        ).all()
        assert len(rows) == 1


async def test_reconcile_finishes_an_upload_whose_event_is_lost(
    api: httpx.AsyncClient, key_a: str, stack: Settings, temporal: Client
) -> None:
    manage.supervisorctl(stack, "stop", "adapter")
    try:
        content = sample_bytes(900)
        upload = await declare(api, key_a, content)
        assert (await put(upload, content)).status_code == 200
        await wait_for_status(
            api, key_a, upload["file_id"], "ready", timeout=stack.reconcile_after_seconds + 30
        )
    finally:
        manage.supervisorctl(stack, "start", "adapter")
    signals, verifies, probes = await _history_counts(temporal, f"ingest-{upload['file_id']}")
    assert signals == 0 and probes >= 1 and verifies == 1


async def test_workflow_history_replays(
    api: httpx.AsyncClient, key_a: str, temporal: Client
) -> None:
    content = sample_bytes(200)
    upload = await declare(api, key_a, content)
    assert (await put(upload, content)).status_code == 200
    await wait_for_status(api, key_a, upload["file_id"], "ready")
    history = await temporal.get_workflow_handle(f"ingest-{upload['file_id']}").fetch_history()
    result = await ingest_replayer().replay_workflow(history)
    assert result.replay_failure is None


async def test_status_comes_from_the_workflow_while_waiting(
    api: httpx.AsyncClient, key_a: str
) -> None:
    upload = await declare(api, key_a, sample_bytes(10))
    response = await api.get(f"/v1/files/{upload['file_id']}", headers=auth(key_a))
    assert response.status_code == 200
    assert response.json()["status"] == "awaiting_upload"
    state = await api.get(f"/v1/uploads/{upload['upload_id']}", headers=auth(key_a))
    assert state.status_code == 200 and state.json()["status"] == "awaiting_upload"

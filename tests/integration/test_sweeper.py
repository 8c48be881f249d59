"""The sweeper, run by `conveyor sweep` against the real stack: what lands outside a live
upload is removed, abandoned multipart uploads are aborted, and deletions that did not finish
are finished; what is live, or a blob's, is left alone."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from typing import Any

import httpx
from botocore.exceptions import ClientError
from sqlalchemy import delete, func, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, ScheduleActionStartWorkflow

from conveyor_core.db.models import Blob, File
from conveyor_core.settings import Settings
from tests.integration import samples
from tests.integration.conftest import run_cli
from tests.integration.inspection import head_status
from tests.integration.uploads import auth, upload


def sweep(stack: Settings) -> dict[str, int]:
    counts: dict[str, int] = json.loads(run_cli(stack, "sweep", "--grace", "0", "--json").stdout)
    return counts


def _parts_of(s3: Any, bucket: str, key: str, upload_id: str) -> int | None:
    """How many parts the multipart upload holds; None once it is gone."""
    try:
        return len(s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id).get("Parts", []))
    except ClientError as e:
        assert e.response["Error"]["Code"] in ("NoSuchUpload", "404"), e.response
        return None


async def test_objects_no_upload_waits_for_are_removed_but_a_blobs_are_kept(
    stack: Settings, s3: Any, sessions: sessionmaker[Session]
) -> None:
    # Written under incoming/ with no upload of ours for the key (the relay leaves those:
    # only the sweeper, after the grace period, judges them).
    stray = f"incoming/{uuid.uuid4()}/{uuid.uuid4()}"
    s3.put_object(Bucket=stack.bucket, Key=stray, Body=b"nobody's bytes")
    # A blob recorded before uploads were sealed keeps its bytes at its incoming key.
    legacy = f"incoming/{uuid.uuid4()}/{uuid.uuid4()}"
    data = os.urandom(64)
    sha = hashlib.sha256(data).hexdigest()
    s3.put_object(Bucket=stack.bucket, Key=legacy, Body=data)
    with sessions.begin() as session:
        session.add(
            Blob(
                sha256=sha,
                bucket=stack.bucket,
                object_key=legacy,
                size=len(data),
                content_type="application/octet-stream",
                status="ready",
            )
        )
    try:
        counts = sweep(stack)
        assert counts["strays_removed"] >= 1, counts
        assert head_status(s3, stack.bucket, stray) == 404
        assert head_status(s3, stack.bucket, legacy) == 200
    finally:
        with sessions.begin() as session:
            session.execute(delete(Blob).where(Blob.sha256 == sha))
        s3.delete_object(Bucket=stack.bucket, Key=legacy)


async def test_abandoned_multipart_uploads_are_aborted_and_live_ones_kept(
    stack: Settings, s3: Any, api: httpx.AsyncClient, key_a: str
) -> None:
    orphan_key = f"incoming/{uuid.uuid4()}/{uuid.uuid4()}"
    orphan = s3.create_multipart_upload(Bucket=stack.bucket, Key=orphan_key)["UploadId"]
    s3.upload_part(
        Bucket=stack.bucket, Key=orphan_key, UploadId=orphan, PartNumber=1, Body=os.urandom(1024)
    )
    assert _parts_of(s3, stack.bucket, orphan_key, orphan) == 1

    # A live upload's own multipart upload, still waiting for its parts.
    created = await api.post(
        "/v1/uploads",
        json={
            "filename": "big.bin",
            "size": stack.multipart_threshold,
            "content_type": "text/plain",
        },
        headers=auth(key_a),
    )
    assert created.status_code == 201 and created.json()["method"] == "MULTIPART", created.text
    live = created.json()
    signed = await api.post(
        f"/v1/uploads/{live['upload_id']}/parts", json={"part_numbers": [1]}, headers=auth(key_a)
    )
    part = signed.json()["parts"][0]
    async with httpx.AsyncClient(timeout=60) as store:
        body = os.urandom(live["part_size"])
        sent = await store.put(part["url"], content=body, headers=part["headers"])
        assert sent.status_code == 200, sent.text
    live_key = f"incoming/{part['url'].split('/incoming/')[1].split('?')[0]}"
    live_id = part["url"].split("uploadId=")[1].split("&")[0]
    try:
        counts = sweep(stack)
        assert counts["multipart_aborted"] >= 1, counts
        assert _parts_of(s3, stack.bucket, orphan_key, orphan) is None
        assert _parts_of(s3, stack.bucket, live_key, live_id) == 1
    finally:
        await api.delete(f"/v1/uploads/{live['upload_id']}", headers=auth(key_a))


async def _ready_image(api: httpx.AsyncClient, key: str, words: str) -> dict[str, Any]:
    file = await upload(api, key, samples.text_image(words), content_type="image/png")
    assert file["status"] == "ready" and file["thumbnails"], file
    return file


def _objects_of(sessions: sessionmaker[Session], sha256: str) -> list[tuple[str, str]]:
    with sessions() as session:
        blob = session.get(Blob, sha256)
        assert blob is not None
        return [(blob.bucket, blob.object_key)] + [(t["bucket"], t["key"]) for t in blob.thumbnails]


async def test_deletions_that_did_not_finish_are_finished(
    stack: Settings,
    s3: Any,
    api: httpx.AsyncClient,
    key_a: str,
    sessions: sessionmaker[Session],
    temporal: Client,
) -> None:
    # One whose workflow never started (the API committed `deleted`, then died) ...
    never_started = await _ready_image(api, key_a, "DELETED BUT NEVER RELEASED")
    # ... and one whose release stopped half-way (the blob left `releasing`).
    half_done = await _ready_image(api, key_a, "RELEASE STOPPED HALF WAY")
    objects = {f["sha256"]: _objects_of(sessions, f["sha256"]) for f in (never_started, half_done)}
    with sessions.begin() as session:
        session.execute(
            update(File)
            .where(File.id.in_([uuid.UUID(never_started["id"]), uuid.UUID(half_done["id"])]))
            .values(status="deleted")
        )
        session.execute(
            update(Blob)
            .where(Blob.sha256 == half_done["sha256"])
            .values(status="releasing", releasing_at=func.now())
        )
    counts = sweep(stack)
    assert counts["deletions_restarted"] >= 2, counts
    for file in (never_started, half_done):
        await temporal.get_workflow_handle(f"delete-{file['id']}").result()
        with sessions() as session:
            blob = session.get(Blob, file["sha256"])
            assert blob is not None and blob.status == "released", file
        for bucket, key in objects[file["sha256"]]:
            assert head_status(s3, bucket, key) == 404, (bucket, key)
    # Nothing is left to take up: a second sweep starts none of them again.
    assert sweep(stack)["deletions_restarted"] == 0


async def test_the_worker_keeps_the_sweep_on_a_schedule(stack: Settings, temporal: Client) -> None:
    described = await temporal.get_schedule_handle("conveyor-sweep").describe()
    intervals = described.schedule.spec.intervals
    assert [i.every.total_seconds() for i in intervals] == [stack.sweep_interval_seconds]
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "SweepWorkflow" and action.task_queue == stack.ingest_task_queue

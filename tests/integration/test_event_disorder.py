"""Store events doubled, reordered, early, unknown or dropped: each file still ends as on
the normal path, with one file row, one blob, and its bytes processed once.

Events are published onto JetStream as a store does (S3 event records on the events
subject, each with its own `Nats-Msg-Id` so JetStream's duplicate window keeps them all),
and the real relay and workflows take them from there.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import nats
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from conveyor_core.db.models import Blob, File, Upload
from conveyor_core.events import ObjectCreated, to_s3_record
from conveyor_core.settings import Settings
from tests.helpers import assert_eventually, ingest_replayer
from tests.integration.inspection import activity_types, head_status
from tests.integration.uploads import auth, declare, put, sample_bytes, wait_for_status
from workers.stack import manage

pytestmark = pytest.mark.integration

# The activities that process a file's bytes once they are verified: each runs once. (These
# files are not images: thumbnails and OCR do not apply, and are not scheduled at all.)
ONCE = ("claim_blob", "plan_stages", "stage_scan", "stage_text", "commit_outcome")
NEVER = ("stage_thumbnails", "stage_ocr", "scan_blob", "make_thumbnails", "ocr_blob")


# --- publishing as a store does ------------------------------------------------------------


def created(stack: Settings, key: str, size: int) -> dict[str, Any]:
    event = ObjectCreated(bucket=stack.bucket, key=key, size=size, etag=None, sequencer=None)
    return to_s3_record(event, datetime.now(UTC).isoformat())


def removed(stack: Settings, key: str) -> dict[str, Any]:
    record = created(stack, key, 0)
    record["eventName"] = "ObjectRemoved:Delete"
    return record


async def publish(stack: Settings, *records: dict[str, Any]) -> None:
    """Each record as its own message, in order, each with a new message id."""
    nc = await nats.connect(stack.nats_servers)
    try:
        js = nc.jetstream()
        for record in records:
            await js.publish(
                stack.events_subject,
                json.dumps({"Records": [record]}).encode(),
                headers={"Nats-Msg-Id": str(uuid.uuid4())},
            )
    finally:
        await nc.close()


async def relay_caught_up(stack: Settings) -> None:
    """Waits until the relay has acknowledged every message in the stream."""
    nc = await nats.connect(stack.nats_servers)
    try:
        js = nc.jetstream()

        async def drained() -> None:
            info = await js.consumer_info(stack.events_stream, stack.relay_durable)
            assert info.num_pending == 0 and info.num_ack_pending == 0, info

        await assert_eventually(drained, timeout=30)
    finally:
        await nc.close()


# --- the end state -------------------------------------------------------------------------


def object_keys(sessions: sessionmaker[Session], upload_id: str) -> tuple[str, str]:
    """(incoming, sealed): where the upload's bytes are sent, and where they are sealed."""
    with sessions() as session:
        row = session.get(Upload, uuid.UUID(upload_id))
        assert row is not None and row.sealed_key is not None
        return row.object_key, row.sealed_key


async def history(temporal: Client, workflow_id: str) -> tuple[int, Counter[str]]:
    """(signals received, activities run by type, local ones included) of the workflow's
    run."""
    history = await temporal.get_workflow_handle(workflow_id).fetch_history()
    signals = sum(
        e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED for e in history.events
    )
    return signals, Counter(activity_types(history))


def outcome(file: dict[str, Any]) -> dict[str, Any]:
    """What must match the normal path: status and each stage's status and detail."""
    return {
        "status": file["status"],
        "status_detail": file["status_detail"],
        # Sizes differ from one test to the next: "plain text (utf-8), 700 characters".
        "stages": {
            n: (s["status"], re.sub(r"\d+", "N", s["detail"] or ""))
            for n, s in file["stages"].items()
        },
    }


@dataclass(frozen=True)
class Chain:
    """The real chain a scenario drives: the API with tenant A's key, Temporal, the
    database, the store, and the stack's settings."""

    api: httpx.AsyncClient
    key: str
    stack: Settings
    temporal: Client
    sessions: sessionmaker[Session]
    s3: Any


@pytest.fixture
def chain(
    api: httpx.AsyncClient,
    key_a: str,
    stack: Settings,
    temporal: Client,
    sessions: sessionmaker[Session],
    s3: Any,
) -> Chain:
    return Chain(api, key_a, stack, temporal, sessions, s3)


async def assert_processed_once(
    chain: Chain,
    created_upload: dict[str, Any],
    content: bytes,
    *,
    verifies: int = 1,
) -> tuple[int, Counter[str]]:
    """The file is ready as on the normal path, its workflow closed having processed the
    bytes once, with one file row and one blob holding them under the upload's own key."""
    file_id = created_upload["file_id"]
    file = await wait_for_status(chain.api, chain.key, file_id, "ready", timeout=90)
    assert outcome(file) == NORMAL_OUTCOME, file
    workflow_id = f"ingest-{file_id}"

    async def closed() -> None:
        described = await chain.temporal.get_workflow_handle(workflow_id).describe()
        assert described.status == WorkflowExecutionStatus.COMPLETED

    await assert_eventually(closed, timeout=30)
    await relay_caught_up(chain.stack)  # every copy of its events has been handled by now
    signals, activities = await history(chain.temporal, workflow_id)
    assert activities["seal_and_verify"] == verifies, activities
    assert {name: activities[name] for name in ONCE} == dict.fromkeys(ONCE, 1), activities
    assert {name: activities[name] for name in NEVER} == dict.fromkeys(NEVER, 0), activities

    sha = hashlib.sha256(content).hexdigest()
    # The bytes were sent to the upload's incoming key and sealed under its sealed key.
    sent_to, key_in_store = object_keys(chain.sessions, created_upload["upload_id"])
    with chain.sessions() as session:
        files = session.execute(select(func.count()).where(File.sha256 == sha)).scalar_one()
        assert files == 1
        blobs = session.execute(select(Blob).where(Blob.sha256 == sha)).scalars().all()
        assert len(blobs) == 1 and blobs[0].object_key == key_in_store
    assert head_status(chain.s3, chain.stack.bucket, key_in_store) == 200
    assert head_status(chain.s3, chain.stack.bucket, sent_to) == 404
    return signals, activities


NORMAL_OUTCOME: dict[str, Any] = {}


@pytest.fixture(autouse=True)
async def normal_outcome(api: httpx.AsyncClient, key_a: str) -> None:
    """The outcome of the normal path, for the same kind of bytes, measured once."""
    if NORMAL_OUTCOME:
        return
    content = sample_bytes(512)
    upload = await declare(api, key_a, content)
    assert (await put(upload, content)).status_code == 200
    NORMAL_OUTCOME.update(outcome(await wait_for_status(api, key_a, upload["file_id"], "ready")))
    assert NORMAL_OUTCOME["stages"]["scan"] == ("succeeded", "clean"), NORMAL_OUTCOME


# --- the scenarios -------------------------------------------------------------------------


async def test_doubled_events_with_new_message_ids_are_processed_once(
    chain: Chain,
) -> None:
    content = sample_bytes(700)
    upload = await declare(chain.api, chain.key, content)
    key = object_keys(chain.sessions, upload["upload_id"])[0]
    manage.supervisorctl(chain.stack, "stop", "relay")
    try:
        assert (await put(upload, content)).status_code == 200
        # Behind the adapter's own event, two more copies, as a store that delivers twice.
        await publish(chain.stack, created(chain.stack, key, 700), created(chain.stack, key, 700))
    finally:
        manage.supervisorctl(chain.stack, "start", "relay")
    signals, _ = await assert_processed_once(chain, upload, content)
    # Copies handled after the upload was sealed are known to the relay as strays (nothing
    # left under the key) and not signalled; copies handled before it are signalled.
    assert signals >= 1


async def test_an_event_before_its_object_leaves_the_upload_waiting(
    chain: Chain,
) -> None:
    """An event that comes before the object (a store that announces early, or a forged
    event) finds nothing to verify: the upload goes on waiting for its bytes."""
    content = sample_bytes(800)
    upload = await declare(chain.api, chain.key, content)
    key = object_keys(chain.sessions, upload["upload_id"])[0]
    await publish(chain.stack, created(chain.stack, key, 800))
    workflow_id = f"ingest-{upload['file_id']}"

    async def looked_and_found_nothing() -> None:
        _, activities = await history(chain.temporal, workflow_id)
        # The seal found nothing to move, so nothing was verified (the stage stays pending).
        assert activities["seal_and_verify"] == 1, activities
        state = await chain.api.get(f"/v1/uploads/{upload['upload_id']}", headers=auth(chain.key))
        assert state.json()["status"] == "awaiting_upload", state.text

    await assert_eventually(looked_and_found_nothing, timeout=30)
    file = (await chain.api.get(f"/v1/files/{upload['file_id']}", headers=auth(chain.key))).json()
    assert file["stages"]["verify"]["status"] == "pending", file

    assert (await put(upload, content)).status_code == 200
    # Sealed and verified in one activity: the one that found nothing, then the real one.
    await assert_processed_once(chain, upload, content, verifies=2)
    # The run that waited on replays (the change is behind workflow.patched).
    replayed = await ingest_replayer().replay_workflow(
        await chain.temporal.get_workflow_handle(workflow_id).fetch_history()
    )
    assert replayed.replay_failure is None


async def test_events_unknown_to_the_relay_are_skipped_and_reconcile_finishes(
    chain: Chain,
) -> None:
    """An event for an upload the relay does not know (yet) is acknowledged and skipped;
    the upload it was for is finished by its workflow's reconcile, and the queue flows on."""
    content = sample_bytes(900)
    upload = await declare(chain.api, chain.key, content)
    key = object_keys(chain.sessions, upload["upload_id"])[0]
    hidden = f"{key}.not-yet"
    # The relay's view while the upload is not known: no upload row under this key.
    with chain.sessions.begin() as session:
        session.execute(update(Upload).where(Upload.object_key == key).values(object_key=hidden))
    try:
        assert (await put(upload, content)).status_code == 200  # the adapter's event
        tenant_prefix = key.rsplit("/", 1)[0]
        await publish(chain.stack, created(chain.stack, f"{tenant_prefix}/{uuid.uuid4()}", 1))
        await relay_caught_up(chain.stack)
    finally:
        with chain.sessions.begin() as session:
            session.execute(
                update(Upload).where(Upload.object_key == hidden).values(object_key=key)
            )
    signals, activities = await assert_processed_once(chain, upload, content)
    assert signals == 0 and activities["probe_object"] >= 1, activities

    # The skipped events held nothing up: the next upload's event goes through.
    later = sample_bytes(900)
    next_upload = await declare(chain.api, chain.key, later)
    assert (await put(next_upload, later)).status_code == 200
    signals, _ = await assert_processed_once(chain, next_upload, later)
    assert signals >= 1


async def test_events_of_two_uploads_in_reverse_order(
    chain: Chain,
) -> None:
    first_bytes, second_bytes = sample_bytes(1000), sample_bytes(1100)
    first = await declare(chain.api, chain.key, first_bytes)
    second = await declare(chain.api, chain.key, second_bytes)
    manage.supervisorctl(chain.stack, "stop", "relay")
    manage.supervisorctl(chain.stack, "stop", "adapter")
    try:
        assert (await put(first, first_bytes)).status_code == 200
        assert (await put(second, second_bytes)).status_code == 200
        await publish(
            chain.stack,
            created(chain.stack, object_keys(chain.sessions, second["upload_id"])[0], 1100),
            created(chain.stack, object_keys(chain.sessions, first["upload_id"])[0], 1000),
        )
    finally:
        manage.supervisorctl(chain.stack, "start", "adapter")
        manage.supervisorctl(chain.stack, "start", "relay")
    for upload, content in ((first, first_bytes), (second, second_bytes)):
        signals, _ = await assert_processed_once(chain, upload, content)
        assert signals >= 1


async def test_a_delete_event_before_or_after_the_create_changes_nothing(
    chain: Chain,
) -> None:
    content = sample_bytes(1200)
    upload = await declare(chain.api, chain.key, content)
    key = object_keys(chain.sessions, upload["upload_id"])[0]
    manage.supervisorctl(chain.stack, "stop", "relay")
    try:
        await publish(chain.stack, removed(chain.stack, key))
        assert (await put(upload, content)).status_code == 200
    finally:
        manage.supervisorctl(chain.stack, "start", "relay")
    await assert_processed_once(chain, upload, content)

    await publish(chain.stack, removed(chain.stack, key))
    await relay_caught_up(chain.stack)
    await assert_processed_once(chain, upload, content)


async def test_dropped_events_are_made_up_by_reconcile(
    chain: Chain,
) -> None:
    content = sample_bytes(1300)
    upload = await declare(chain.api, chain.key, content)
    manage.supervisorctl(chain.stack, "stop", "adapter")
    try:
        assert (await put(upload, content)).status_code == 200
        signals, activities = await assert_processed_once(chain, upload, content)
    finally:
        manage.supervisorctl(chain.stack, "start", "adapter")
    assert signals == 0 and activities["probe_object"] >= 1, activities

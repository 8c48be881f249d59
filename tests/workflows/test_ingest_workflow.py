"""IngestWorkflow's own logic against a real Temporal dev server, with stub activities."""

from __future__ import annotations

import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.stage_batch import StageBatch, batch_runs
from conveyor_core.payloads import DATA_CONVERTER
from conveyor_core.stages import StageInput, StageOutput
from conveyor_core.types import (
    FILE_MISSING_ERROR,
    INVALID_IMAGE_ERROR,
    SCAN_TOO_LARGE_ERROR,
    BlobRef,
    BlobRole,
    BlobState,
    BlobStatus,
    ClaimInput,
    ClaimResult,
    CommitInput,
    DeleteObjectsInput,
    DiscardInput,
    EnqueueWebhooksInput,
    EnqueueWebhooksResult,
    FileStatus,
    IngestInput,
    ObjectProbe,
    ObjectRef,
    ObjectUploaded,
    OcrInput,
    OcrResult,
    PublishInput,
    PublishResult,
    QuarantineInput,
    ScanInput,
    ScanResult,
    SealAndVerifyInput,
    SealInput,
    SealResult,
    StageState,
    StageStatus,
    Thumbnail,
    ThumbnailsInput,
    ThumbnailsResult,
    VerifyInput,
    VerifyResult,
    Visibility,
)
from tests.helpers import assert_eventually, ingest_replayer
from tests.integration.inspection import activity_types
from tests.workflows.stage_stubs import plan_builtin_stages
from workers.temporal_worker import WORKFLOW_RUNNER
from workflows import search_attributes
from workflows.ingest import CURRENT_PATCH, IngestWorkflow

HISTORIES = Path(__file__).parent / "histories"

TEMPORAL_BIN = Path(sys.executable).parent / "temporal"
SHA = "a" * 64


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    binary = str(TEMPORAL_BIN) if TEMPORAL_BIN.exists() else shutil.which("temporal")
    assert binary, "temporal CLI not installed (bootstrap installs temporal-bin)"
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary,
        dev_server_extra_args=["--log-level", "error"],
        search_attributes=search_attributes.ALL,  # as `conveyor migrate --with-store` does
        data_converter=DATA_CONVERTER,  # as the worker and the API use
    ) as env:
        yield env


def _blob(key: str = "incoming/t/u") -> BlobRef:
    return BlobRef(bucket="b", key=key, sha256=SHA, size=3, content_type="image/png")


@dataclass
class Stubs:
    """Activities with the real names, recording what the workflow asked for."""

    object_exists: bool = False
    file_row: bool = True  # False: the API died before committing the file's row
    webhook_queue: str = "webhooks"  # where enqueue says deliveries run
    verify_result: VerifyResult = field(
        default_factory=lambda: VerifyResult(
            ok=True, detail=None, sha256=SHA, size=3, content_type="image/png"
        )
    )
    claim: Callable[[ClaimInput], ClaimResult] | None = None
    awaited_states: list[BlobState] = field(default_factory=list)
    scan: Callable[[], ScanResult] = lambda: ScanResult(infected=False)
    thumbnails: Callable[[], ThumbnailsResult] = lambda: ThumbnailsResult(
        thumbnails=[
            Thumbnail(256, 256, 128, "b", f"derivatives/{SHA}/thumb-256.webp", "image/webp")
        ],
        detail="1 sizes",
    )
    calls: Counter[str] = field(default_factory=Counter)
    commits: list[CommitInput] = field(default_factory=list)
    claims: list[ClaimInput] = field(default_factory=list)
    discarded: list[DiscardInput] = field(default_factory=list)
    sealed: list[SealInput] = field(default_factory=list)
    # The deliveries enqueue_webhooks answers; the ingest workflow starts one child for each.
    webhook_deliveries: list[str] = field(default_factory=list)
    enqueued: list[EnqueueWebhooksInput] = field(default_factory=list)
    # False: the queue's worker batches no stage (an older one), so every batch fails.
    batches: bool = True

    def activities(self) -> list[Any]:
        @activity.defn(name="probe_object")
        def probe_object(ref: ObjectRef) -> ObjectProbe:
            self.calls["probe_object"] += 1
            return ObjectProbe(exists=self.object_exists, size=3 if self.object_exists else None)

        @activity.defn(name="delete_object")
        def delete_object(ref: ObjectRef) -> None:
            self.calls["delete_object"] += 1

        @activity.defn(name="discard_upload")
        def discard_upload(inp: DiscardInput) -> None:
            self.calls["discard_upload"] += 1
            self.discarded.append(inp)

        @activity.defn(name="delete_objects")
        def delete_objects(inp: DeleteObjectsInput) -> None:
            self.calls["delete_objects"] += 1

        @activity.defn(name="seal_upload")
        def seal_upload(inp: SealInput) -> SealResult:
            self.calls["seal_upload"] += 1
            self.sealed.append(inp)
            return SealResult(landed=True)

        @activity.defn(name="verify_object")
        def verify_object(inp: VerifyInput) -> VerifyResult:
            self.calls["verify_object"] += 1
            return self.verify_result

        @activity.defn(name="seal_and_verify")
        def seal_and_verify(inp: SealAndVerifyInput) -> VerifyResult:
            self.calls["seal_and_verify"] += 1
            seal_upload(inp.seal)
            return verify_object(inp.verify)

        @activity.defn(name="claim_blob")
        def claim_blob(inp: ClaimInput) -> ClaimResult:
            self.calls["claim_blob"] += 1
            self.claims.append(inp)
            if self.claim is not None:
                return self.claim(inp)
            return ClaimResult(BlobRole.OWNER, BlobState(inp.blob, BlobStatus.PROCESSING))

        @activity.defn(name="await_blob")
        def await_blob(sha256: str) -> BlobState:
            self.calls["await_blob"] += 1
            state = self.awaited_states.pop(0)
            if not state.status.is_terminal:
                raise ApplicationError("still processing", type="BlobProcessing")
            return state

        @activity.defn(name="scan_blob")
        def scan_blob(inp: ScanInput) -> ScanResult:
            self.calls["scan_blob"] += 1
            return self.scan()

        @activity.defn(name="make_thumbnails")
        def make_thumbnails(inp: ThumbnailsInput) -> ThumbnailsResult:
            self.calls["make_thumbnails"] += 1
            return self.thumbnails()

        @activity.defn(name="ocr_blob")
        def ocr_blob(inp: OcrInput) -> OcrResult:
            self.calls["ocr_blob"] += 1
            return OcrResult(skipped_reason="no OCR for image/png")

        @activity.defn(name="quarantine_object")
        def quarantine_object(inp: QuarantineInput) -> None:
            self.calls["quarantine_object"] += 1

        @activity.defn(name="publish_blob")
        def publish_blob(inp: PublishInput) -> PublishResult:
            self.calls["publish_blob"] += 1
            return PublishResult(public_key=inp.blob.sha256, cdn_url=f"http://edge/{SHA}")

        @activity.defn(name="commit_file")
        def commit_file(inp: CommitInput) -> None:
            self.calls["commit_file"] += 1
            if not self.file_row:
                raise ApplicationError(
                    f"file {inp.file_id} has no row", type=FILE_MISSING_ERROR, non_retryable=True
                )
            self.commits.append(inp)

        @activity.defn(name="enqueue_webhooks")
        def enqueue_webhooks(inp: EnqueueWebhooksInput) -> EnqueueWebhooksResult:
            self.calls["enqueue_webhooks"] += 1
            self.enqueued.append(inp)
            return EnqueueWebhooksResult(
                delivery_ids=list(self.webhook_deliveries),
                task_queue=self.webhook_queue,
                retry_initial_seconds=0.1,
                retry_max_interval_seconds=0.2,
                deadline_seconds=5,
            )

        @activity.defn(name="commit_outcome")
        def commit_outcome(inp: CommitInput) -> EnqueueWebhooksResult:
            self.calls["commit_outcome"] += 1
            commit_file(inp)
            return enqueue_webhooks(EnqueueWebhooksInput(file_id=inp.file_id, status=inp.status))

        @activity.defn(name="stage_scan")
        def stage_scan(inp: StageInput) -> StageOutput:
            result = scan_blob(ScanInput(blob=inp.blob))
            return StageOutput(
                detail=result.detail, verdict=result.detail if result.infected else None
            )

        @activity.defn(name="stage_thumbnails")
        def stage_thumbnails(inp: StageInput) -> StageOutput:
            made = make_thumbnails(ThumbnailsInput(blob=inp.blob, sizes=[256]))
            return StageOutput(
                skipped_reason=made.skipped_reason, detail=made.detail, thumbnails=made.thumbnails
            )

        @activity.defn(name="stage_ocr")
        def stage_ocr(inp: StageInput) -> StageOutput:
            result = ocr_blob(OcrInput(blob=inp.blob))
            return StageOutput(skipped_reason=result.skipped_reason, detail=result.detail)

        batched = batch_runs([stage_thumbnails, stage_ocr]) if self.batches else {}
        return [
            plan_builtin_stages,
            stage_scan,
            stage_thumbnails,
            stage_ocr,
            StageBatch(batched).run,
            probe_object,
            delete_object,
            discard_upload,
            delete_objects,
            seal_upload,
            verify_object,
            seal_and_verify,
            claim_blob,
            await_blob,
            scan_blob,
            make_thumbnails,
            ocr_blob,
            quarantine_object,
            publish_blob,
            commit_file,
            enqueue_webhooks,
            commit_outcome,
        ]


def _input(queue: str, *, expire: int = 3600, reconcile: int = 3600, **changes: Any) -> IngestInput:
    file_id = str(uuid.uuid4())
    values: dict[str, Any] = {
        "file_id": file_id,
        "tenant_id": "t",
        "upload_id": "u",
        "bucket": "b",
        "object_key": "incoming/t/u",
        "declared_size": 3,
        "declared_content_type": "image/png",
        "declared_sha256": None,
        "expire_after_seconds": expire,
        "reconcile_after_seconds": reconcile,
        "scan_task_queue": queue,
        "media_task_queue": queue,
    }
    values.update(changes)
    return IngestInput(**values)


async def _run(
    client: Client, stubs: Stubs, *, signal: bool = True, **changes: Any
) -> tuple[Any, WorkflowHandle[Any, Any]]:
    queue = f"test-{uuid.uuid4()}"
    inp = _input(queue, **changes)
    async with Worker(
        client,
        task_queue=queue,
        workflows=[IngestWorkflow],
        workflow_runner=WORKFLOW_RUNNER,
        activities=stubs.activities(),
        activity_executor=ThreadPoolExecutor(8),
    ):
        handle = await client.start_workflow(
            IngestWorkflow.run, inp, id=f"ingest-{inp.file_id}", task_queue=queue
        )
        if signal:
            event = ObjectUploaded(bucket=inp.bucket, key=inp.object_key, size=3)
            await handle.signal(IngestWorkflow.object_uploaded, event)
            await handle.signal(IngestWorkflow.object_uploaded, event)
        return await handle.result(), handle


async def test_ingest_owner_runs_every_stage_once_despite_a_duplicate_signal(
    env: WorkflowEnvironment,
) -> None:
    stubs = Stubs()
    result, _ = await _run(env.client, stubs)
    assert result.status == FileStatus.READY
    for name in ("verify_object", "claim_blob", "scan_blob", "make_thumbnails", "ocr_blob"):
        assert stubs.calls[name] == 1, name
    assert stubs.calls["probe_object"] == 0 and stubs.calls["publish_blob"] == 0
    commit = stubs.commits[-1]
    assert commit.status == FileStatus.READY and commit.blob_status == BlobStatus.READY
    assert commit.stages["scan"] == StageState(
        StageStatus.SUCCEEDED, "clean", commit.stages["scan"].duration_ms
    )
    assert commit.stages["ocr"].status == StageStatus.SKIPPED
    assert commit.stages["ocr"].detail == "no OCR for image/png"
    assert commit.thumbnails[0].key == f"derivatives/{SHA}/thumb-256.webp"


async def test_ingest_reconciles_when_no_event_comes(env: WorkflowEnvironment) -> None:
    stubs = Stubs(object_exists=True)
    result, _ = await _run(env.client, stubs, signal=False, reconcile=1)
    assert result.status == FileStatus.READY
    assert stubs.calls["probe_object"] >= 1 and stubs.calls["verify_object"] == 1


async def test_ingest_expires_and_cleans_up(env: WorkflowEnvironment) -> None:
    stubs = Stubs(object_exists=False)
    result, _ = await _run(
        env.client, stubs, signal=False, expire=2, reconcile=1, multipart_upload_id="mp-1"
    )
    assert result.status == FileStatus.EXPIRED
    assert stubs.calls["discard_upload"] == 1 and stubs.calls["verify_object"] == 0
    assert stubs.discarded[0].multipart_upload_id == "mp-1"
    assert stubs.commits[0].status == FileStatus.EXPIRED
    assert stubs.commits[0].stages["verify"].status == StageStatus.SKIPPED


async def test_ingest_without_a_file_row_expires_quietly(env: WorkflowEnvironment) -> None:
    # The API started the workflow, then died before committing the row: nobody ever
    # heard of the upload. It expires and cleans up like any other, and ends completed.
    stubs = Stubs(object_exists=False, file_row=False)
    result, handle = await _run(env.client, stubs, signal=False, expire=2, reconcile=1)
    assert result.status == FileStatus.EXPIRED
    assert result.detail == "the upload was never committed"
    assert stubs.calls["discard_upload"] == 1 and stubs.calls["commit_file"] == 1
    assert stubs.calls["enqueue_webhooks"] == 0
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_ingest_cancel_ends_cancelled(env: WorkflowEnvironment) -> None:
    stubs = Stubs()
    queue = f"test-{uuid.uuid4()}"
    inp = _input(queue)
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[IngestWorkflow],
        workflow_runner=WORKFLOW_RUNNER,
        activities=stubs.activities(),
        activity_executor=ThreadPoolExecutor(4),
    ):
        handle = await env.client.start_workflow(
            IngestWorkflow.run, inp, id=f"ingest-{inp.file_id}", task_queue=queue
        )

        async def waiting() -> None:
            assert (await handle.query(IngestWorkflow.status)).status == FileStatus.AWAITING_UPLOAD

        await assert_eventually(waiting)
        await handle.signal(IngestWorkflow.cancel)
        result = await handle.result()
    assert result.status == FileStatus.CANCELLED
    assert stubs.commits[0].status == FileStatus.CANCELLED and stubs.calls["discard_upload"] == 1


async def test_ingest_verify_mismatch_fails_with_reason(env: WorkflowEnvironment) -> None:
    detail = "size mismatch: declared 3 bytes, the object has 4"
    stubs = Stubs(verify_result=VerifyResult(ok=False, detail=detail))
    result, _ = await _run(env.client, stubs)
    assert result.status == FileStatus.FAILED and result.detail == f"verify: {detail}"
    assert stubs.calls["claim_blob"] == 0 and stubs.calls["delete_object"] == 1
    assert stubs.commits[0].stages["verify"].status == StageStatus.FAILED
    assert stubs.commits[0].stages["verify"].detail == detail
    assert stubs.commits[0].stages["scan"].status == StageStatus.SKIPPED


async def test_ingest_infected_is_quarantined(env: WorkflowEnvironment) -> None:
    stubs = Stubs(
        scan=lambda: ScanResult(infected=True, signature="Eicar", detail="infected: Eicar")
    )
    result, _ = await _run(env.client, stubs)
    assert result.status == FileStatus.QUARANTINED and result.detail == "infected: Eicar"
    assert stubs.calls["quarantine_object"] == 1 and stubs.calls["publish_blob"] == 0
    commit = stubs.commits[-1]
    assert commit.blob_status == BlobStatus.QUARANTINED and commit.thumbnails == []


async def test_ingest_scan_failure_fails_the_file(env: WorkflowEnvironment) -> None:
    def too_large() -> ScanResult:
        raise ApplicationError(
            "too large to scan (3 bytes, limit 1)", type=SCAN_TOO_LARGE_ERROR, non_retryable=True
        )

    stubs = Stubs(scan=too_large)
    result, _ = await _run(env.client, stubs)
    assert result.status == FileStatus.FAILED
    assert result.detail == "scan: too large to scan (3 bytes, limit 1)"
    assert stubs.calls["scan_blob"] == 1
    assert stubs.commits[-1].blob_status == BlobStatus.FAILED


async def test_ingest_thumbnail_failure_leaves_the_file_ready(env: WorkflowEnvironment) -> None:
    def bomb() -> ThumbnailsResult:
        raise ApplicationError(
            "image is larger than the pixel limit", type=INVALID_IMAGE_ERROR, non_retryable=True
        )

    stubs = Stubs(thumbnails=bomb)
    result, _ = await _run(env.client, stubs)
    assert result.status == FileStatus.READY
    stage = stubs.commits[-1].stages["thumbnails"]
    assert (
        stage.status == StageStatus.FAILED
        and stage.detail == "image is larger than the pixel limit"
    )
    assert stubs.calls["make_thumbnails"] == 1


async def test_ingest_duplicate_waits_for_the_owner_and_reuses_its_outcome(
    env: WorkflowEnvironment,
) -> None:
    canonical = _blob("incoming/other/upload")
    stages = {
        "scan": StageState(StageStatus.SUCCEEDED, "clean", 3),
        "thumbnails": StageState(StageStatus.SUCCEEDED, "2 sizes", 40),
        "ocr": StageState(StageStatus.SKIPPED, "no OCR for image/png"),
    }
    stubs = Stubs(
        claim=lambda inp: ClaimResult(
            BlobRole.DUPLICATE, BlobState(canonical, BlobStatus.PROCESSING)
        ),
        awaited_states=[
            BlobState(canonical, BlobStatus.PROCESSING),
            BlobState(canonical, BlobStatus.READY, stages, public_key=None),
        ],
    )
    result, _ = await _run(env.client, stubs, visibility=Visibility.PUBLIC)
    assert result.status == FileStatus.READY
    assert stubs.calls["scan_blob"] == 0 and stubs.calls["make_thumbnails"] == 0
    assert stubs.calls["await_blob"] == 2
    assert stubs.calls["delete_object"] == 1  # its own object: the bytes are held elsewhere
    assert stubs.calls["publish_blob"] == 1
    commit = stubs.commits[-1]
    assert commit.blob_status is None and commit.public_key == SHA
    assert commit.stages["thumbnails"] == stages["thumbnails"]


async def test_ingest_another_tenants_duplicate_runs_its_stages_at_the_owners_pace(
    env: WorkflowEnvironment,
) -> None:
    """Finishing at once would tell the tenant that someone else holds these bytes."""
    owner = {
        "scan": StageState(StageStatus.SUCCEEDED, "clean", 600),
        "thumbnails": StageState(StageStatus.SUCCEEDED, "2 sizes", 1500),
        "ocr": StageState(StageStatus.SKIPPED, "no OCR for image/png", 20),
    }
    ready = BlobState(_blob("sealed/0123"), BlobStatus.READY, owner)
    stubs = Stubs(claim=lambda inp: ClaimResult(BlobRole.DUPLICATE, ready, other_tenant=True))
    result, _ = await _run(env.client, stubs)
    assert result.status == FileStatus.READY
    assert stubs.calls["scan_blob"] == 0 and stubs.calls["make_thumbnails"] == 0
    events = stubs.commits[-1].events
    stage_events = [(e.stage, e.status) for e in events if e.kind == "stage"]
    for name in ("scan", "thumbnails", "ocr"):
        assert stage_events.index((name, "running")) < stage_events.index(
            (name, owner[name].status.value)
        ), stage_events
    # They end in the owner's order, each after about the owner's time (within 10 %).
    ended = [s for s, status in stage_events if s != "verify" and status != "running"]
    assert ended == ["ocr", "scan", "thumbnails"], stage_events
    stages = stubs.commits[-1].stages
    for name, outcome in owner.items():
        took = stages[name].duration_ms
        assert took is not None and took >= 0.9 * (outcome.duration_ms or 0), stages
        assert (stages[name].status, stages[name].detail) == (outcome.status, outcome.detail)
    started = next(e.at for e in events if (e.stage, e.status) == ("scan", "running"))
    finished = next(e.at for e in events if (e.stage, e.status) == ("thumbnails", "succeeded"))
    elapsed = datetime.fromisoformat(finished) - datetime.fromisoformat(started)
    assert elapsed >= timedelta(milliseconds=1350)


async def test_ingest_own_tenants_duplicate_is_not_paced(env: WorkflowEnvironment) -> None:
    owner = {"scan": StageState(StageStatus.SUCCEEDED, "clean", 60_000)}
    ready = BlobState(_blob("sealed/0123"), BlobStatus.READY, owner)
    stubs = Stubs(claim=lambda inp: ClaimResult(BlobRole.DUPLICATE, ready, other_tenant=False))
    began = time.monotonic()
    result, _ = await _run(env.client, stubs)
    assert result.status == FileStatus.READY
    assert time.monotonic() - began < 30  # paced, it would take about a minute
    assert stubs.commits[-1].stages["scan"] == owner["scan"]


async def test_ingest_deduplicated_at_creation_attaches_without_an_upload(
    env: WorkflowEnvironment,
) -> None:
    ready = BlobState(
        _blob("incoming/t/first"),
        BlobStatus.READY,
        {"scan": StageState(StageStatus.SUCCEEDED, "clean")},
    )
    stubs = Stubs(claim=lambda inp: ClaimResult(BlobRole.DUPLICATE, ready))
    result, _ = await _run(env.client, stubs, signal=False, deduplicated=True, declared_sha256=SHA)
    assert result.status == FileStatus.READY
    assert stubs.claims[0].existing_only and stubs.claims[0].blob.sha256 == SHA
    assert stubs.calls["verify_object"] == 0 and stubs.calls["delete_object"] == 0
    assert stubs.commits[-1].stages["verify"].status == StageStatus.SKIPPED


async def test_ingest_deduplicated_without_a_file_row_stops_claiming(
    env: WorkflowEnvironment,
) -> None:
    # DEDUPLICATED claims at once and retries until the API's row is visible; when the
    # API failed after starting the workflow, the row never comes: the claim gives up at
    # the upload's expiry and the workflow ends quietly.
    def not_visible(inp: ClaimInput) -> ClaimResult:
        raise ApplicationError("the file's row is not committed yet", type="FileNotYetVisible")

    stubs = Stubs(claim=not_visible, file_row=False)
    result, handle = await _run(
        env.client, stubs, signal=False, deduplicated=True, declared_sha256=SHA, expire=2
    )
    assert result.status == FileStatus.FAILED
    assert result.detail == "the upload was never committed"
    assert stubs.calls["claim_blob"] >= 1 and stubs.calls["commit_file"] == 1
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_ingest_schedules_only_the_stages_that_apply(env: WorkflowEnvironment) -> None:
    # A text file: no thumbnails or OCR activity, only their "skipped" with the reason.
    stubs = Stubs(
        verify_result=VerifyResult(
            ok=True, detail=None, sha256=SHA, size=3, content_type="text/plain"
        )
    )
    result, handle = await _run(env.client, stubs)
    assert result.status == FileStatus.READY
    assert stubs.calls["make_thumbnails"] == 0 and stubs.calls["ocr_blob"] == 0
    assert stubs.calls["scan_blob"] == 1
    stages = stubs.commits[-1].stages
    assert stages["thumbnails"] == StageState(
        StageStatus.SKIPPED, "no thumbnails for text/plain", 0
    )
    assert stages["ocr"] == StageState(StageStatus.SKIPPED, "no OCR for text/plain", 0)
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        async for e in handle.fetch_history_events()
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert "make_thumbnails" not in scheduled and "ocr_blob" not in scheduled


async def test_a_new_run_records_one_patch_and_seals_verifies_and_commits_in_one_step_each(
    env: WorkflowEnvironment,
) -> None:
    # Each patch a run meets costs a marker and a TemporalChangeVersion upsert: a new run
    # meets only CURRENT_PATCH, and still does what every older patch says.
    stubs = Stubs(
        verify_result=VerifyResult(
            ok=True, detail=None, sha256=SHA, size=3, content_type="text/plain"
        )
    )
    result, handle = await _run(env.client, stubs)
    assert result.status == FileStatus.READY
    history = await handle.fetch_history()
    patches = [
        e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
        and e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    assert len(patches) == 1 and CURRENT_PATCH.encode() in patches[0], patches
    # Sealed and verified by one activity; the claim, the stage plan and the outcome with
    # its webhooks as local activities; thumbnails and OCR skipped by the plan.
    assert activity_types(history) == [
        "seal_and_verify",
        "claim_blob",
        "plan_stages",
        "stage_scan",
        "commit_outcome",
    ]
    stages = stubs.commits[-1].stages
    assert set(stages) == {"verify", "scan", "thumbnails", "ocr"}
    assert stages["thumbnails"] == StageState(
        StageStatus.SKIPPED, "no thumbnails for text/plain", 0
    )
    assert stages["ocr"] == StageState(StageStatus.SKIPPED, "no OCR for text/plain", 0)
    assert stubs.commits[-1].stages["verify"] == StageState(
        StageStatus.SUCCEEDED, "text/plain", stubs.commits[-1].stages["verify"].duration_ms
    )


@pytest.mark.parametrize("kind", ["text", "image"])
async def test_ingest_histories_from_before_the_stage_rules_still_replay(kind: str) -> None:
    # Recorded on the real stack before the workflow decided which stages apply: a text
    # file's history has the thumbnails and OCR activities that answered "skipped".
    path = HISTORIES / f"ingest_{kind}_before_stage_rules.json"
    history = WorkflowHistory.from_json(f"ingest-{kind}", path.read_text())
    await ingest_replayer().replay_workflow(history)


@pytest.mark.parametrize("kind", ["text", "image"])
async def test_ingest_histories_from_before_the_one_patch_still_replay(kind: str) -> None:
    # Recorded on the real stack before CURRENT_PATCH: one marker per patch, separate seal
    # and verify activities, and separate commit and enqueue local activities.
    path = HISTORIES / f"ingest_{kind}_before_one_patch.json"
    history = WorkflowHistory.from_json(f"ingest-{kind}", path.read_text())
    await ingest_replayer().replay_workflow(history)


@pytest.mark.parametrize("kind", ["text", "image"])
async def test_ingest_histories_from_before_stage_plugins_still_replay(kind: str) -> None:
    # Recorded (stub activities) by the workflow as it was before stages were plugins: one
    # ingest-2026-12 marker, and the typed scan, thumbnails and OCR activities.
    path = HISTORIES / f"ingest_{kind}_before_stage_plugins.json"
    history = WorkflowHistory.from_json(f"ingest-{kind}", path.read_text())
    await ingest_replayer().replay_workflow(history)


def _image_of(size: int) -> VerifyResult:
    return VerifyResult(ok=True, detail=None, sha256=SHA, size=size, content_type="image/png")


async def test_a_small_files_thumbnails_and_ocr_run_in_one_activity(
    env: WorkflowEnvironment,
) -> None:
    stubs = Stubs()
    result, handle = await _run(env.client, stubs)
    assert result.status == FileStatus.READY
    assert activity_types(await handle.fetch_history()) == [
        "seal_and_verify",
        "claim_blob",
        "plan_stages",
        "stage_scan",
        "stage_batch",
        "commit_outcome",
    ]
    assert stubs.calls["make_thumbnails"] == 1 and stubs.calls["ocr_blob"] == 1
    commit = stubs.commits[-1]
    assert commit.stages["thumbnails"].status == StageStatus.SUCCEEDED
    assert commit.stages["thumbnails"].detail == "1 sizes"
    assert commit.stages["ocr"] == StageState(
        StageStatus.SKIPPED, "no OCR for image/png", commit.stages["ocr"].duration_ms
    )
    assert commit.thumbnails[0].key == f"derivatives/{SHA}/thumb-256.webp"


async def test_a_larger_files_stages_run_each_in_an_activity_of_its_own(
    env: WorkflowEnvironment,
) -> None:
    # Over stage_batch_max_bytes (16 MiB by default): each stage shows its end as it comes.
    stubs = Stubs(verify_result=_image_of(17 * 1024**2))
    result, handle = await _run(env.client, stubs)
    assert result.status == FileStatus.READY
    scheduled = activity_types(await handle.fetch_history())
    assert "stage_batch" not in scheduled
    assert {"stage_thumbnails", "stage_ocr"} <= set(scheduled)
    assert stubs.commits[-1].thumbnails[0].key == f"derivatives/{SHA}/thumb-256.webp"


async def test_a_batched_stage_that_may_succeed_again_runs_again_on_its_own(
    env: WorkflowEnvironment,
) -> None:
    tries: list[int] = []

    def flaky() -> ThumbnailsResult:
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("the store reset the connection")
        return Stubs().thumbnails()

    stubs = Stubs(thumbnails=flaky)
    result, handle = await _run(env.client, stubs)
    assert result.status == FileStatus.READY
    scheduled = activity_types(await handle.fetch_history())
    # Its second attempt is an activity of its own, with its retry policy; OCR is not re-run.
    assert scheduled.count("stage_batch") == 1 and scheduled.count("stage_thumbnails") == 1
    assert "stage_ocr" not in scheduled
    assert stubs.calls["make_thumbnails"] == 2 and stubs.calls["ocr_blob"] == 1
    commit = stubs.commits[-1]
    assert commit.stages["thumbnails"].status == StageStatus.SUCCEEDED
    assert commit.thumbnails[0].key == f"derivatives/{SHA}/thumb-256.webp"


async def test_a_batched_stage_out_of_attempts_fails_with_its_reason(
    env: WorkflowEnvironment,
) -> None:
    # Thumbnails have 3 attempts: one in the batch, two on their own.
    def broken() -> ThumbnailsResult:
        raise RuntimeError("the store reset the connection")

    stubs = Stubs(thumbnails=broken)
    result, handle = await _run(env.client, stubs)
    assert result.status == FileStatus.READY
    assert stubs.calls["make_thumbnails"] == 3
    stage = stubs.commits[-1].stages["thumbnails"]
    assert stage.status == StageStatus.FAILED
    assert stage.detail == "the store reset the connection"


async def test_a_batch_that_cannot_run_runs_each_stage_on_its_own(
    env: WorkflowEnvironment,
) -> None:
    # The queue's worker batches nothing (an older worker): the batch fails as a whole, and
    # each stage runs as its own activity with all its attempts.
    stubs = Stubs(batches=False)
    result, handle = await _run(env.client, stubs)
    assert result.status == FileStatus.READY
    scheduled = activity_types(await handle.fetch_history())
    assert scheduled.count("stage_batch") == 1
    assert {"stage_thumbnails", "stage_ocr"} <= set(scheduled)
    assert stubs.calls["make_thumbnails"] == 1 and stubs.calls["ocr_blob"] == 1
    assert stubs.commits[-1].stages["thumbnails"].status == StageStatus.SUCCEEDED


@pytest.mark.parametrize("kind", ["image", "pdf"])
async def test_ingest_histories_from_before_stage_batches_still_replay(kind: str) -> None:
    # Recorded (stub activities) by the workflow as it was before batches: a PNG's and a
    # PDF's thumbnails and OCR each an activity of its own, from a plan without batches.
    path = HISTORIES / f"ingest_{kind}_before_stage_batches.json"
    history = WorkflowHistory.from_json(f"ingest-{kind}", path.read_text())
    await ingest_replayer().replay_workflow(history)

"""ReprocessWorkflow's paging, throttle, counters and continue-as-new against a real Temporal
dev server, with stub activities."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from conveyor_core.stages import StageInput, StageOutput
from conveyor_core.types import (
    INVALID_IMAGE_ERROR,
    BlobRef,
    EnqueueWebhooksResult,
    OcrInput,
    OcrResult,
    QuarantinedBlob,
    QuarantineInput,
    QuarantineReadyInput,
    RecordStageInput,
    ReprocessBatch,
    ReprocessBatchInput,
    ReprocessFailure,
    ReprocessFilter,
    ReprocessInput,
    ReprocessProgress,
    StageStatus,
    Thumbnail,
    ThumbnailsInput,
    ThumbnailsResult,
    UnpublishInput,
)
from tests.workflows.stage_stubs import plan_builtin_stages
from tests.workflows.test_ingest_workflow import env as env  # the module's own dev server
from workers.temporal_worker import WORKFLOW_RUNNER
from workflows.reprocess import ReprocessWorkflow


def _blobs(n: int, *, text_at: int | None = None) -> list[BlobRef]:
    return [
        BlobRef(
            bucket="b",
            key=f"incoming/t/{i}",
            sha256=f"{i:064x}",
            size=3,
            content_type="text/plain" if i == text_at else "image/png",
        )
        for i in range(n)
    ]


@dataclass
class Stubs:
    blobs: list[BlobRef]
    broken: set[str] = field(default_factory=set)
    delay: float = 0.0
    records: list[RecordStageInput] = field(default_factory=list)
    pages: list[ReprocessBatchInput] = field(default_factory=list)
    sizes: list[list[int]] = field(default_factory=list)
    running: int = 0
    most_running: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    infected: set[str] = field(default_factory=set)  # what the scan's re-run finds
    public: bool = False  # the infected blobs' files include a public one
    steps: list[tuple[str, str]] = field(default_factory=list)  # (activity, sha256)

    def activities(self) -> list[Any]:
        @activity.defn(name="count_reprocess")
        def count_reprocess(filter: ReprocessFilter) -> int:
            return len(self.blobs)

        @activity.defn(name="list_reprocess_batch")
        def list_reprocess_batch(inp: ReprocessBatchInput) -> ReprocessBatch:
            self.pages.append(inp)
            after = inp.after_sha256 or ""
            return ReprocessBatch([b for b in self.blobs if b.sha256 > after][: inp.limit])

        @activity.defn(name="make_thumbnails")
        def make_thumbnails(inp: ThumbnailsInput) -> ThumbnailsResult:
            with self.lock:
                self.running += 1
                self.most_running = max(self.most_running, self.running)
                self.sizes.append(inp.sizes)
            try:
                time.sleep(self.delay)
                if inp.blob.sha256 in self.broken:
                    raise ApplicationError(
                        "image data is truncated", type=INVALID_IMAGE_ERROR, non_retryable=True
                    )
                if not inp.blob.content_type.startswith("image/"):
                    return ThumbnailsResult(
                        skipped_reason=f"no thumbnails for {inp.blob.content_type}"
                    )
                key = f"derivatives/{inp.blob.sha256}/thumb-64.webp"
                thumbs = [Thumbnail(64, 64, 32, "b", key, "image/webp")]
                return ThumbnailsResult(thumbnails=thumbs, detail="1 sizes")
            finally:
                with self.lock:
                    self.running -= 1

        @activity.defn(name="ocr_blob")
        def ocr_blob(inp: OcrInput) -> OcrResult:
            return OcrResult(pages=1, characters=5, detail="eng, 1 page")

        @activity.defn(name="record_blob_stage")
        def record_blob_stage(inp: RecordStageInput) -> bool:
            self.records.append(inp)
            return True

        @activity.defn(name="stage_thumbnails")
        def stage_thumbnails(inp: StageInput) -> StageOutput:
            made = make_thumbnails(ThumbnailsInput(blob=inp.blob, sizes=[64]))
            return StageOutput(
                skipped_reason=made.skipped_reason,
                detail=made.detail,
                thumbnails=made.thumbnails,
                metadata={"width": 64} if made.thumbnails else {},
            )

        @activity.defn(name="stage_ocr")
        def stage_ocr(inp: StageInput) -> StageOutput:
            result = ocr_blob(OcrInput(blob=inp.blob))
            return StageOutput(skipped_reason=result.skipped_reason, detail=result.detail)

        @activity.defn(name="stage_scan")
        def stage_scan(inp: StageInput) -> StageOutput:
            assert inp.options["scan_oversize"] == "serve_unscanned"
            if inp.blob.sha256 in self.infected:
                found = "Conveyor.Test.New FOUND"
                return StageOutput(detail=found, verdict=found)
            return StageOutput(detail="clean")

        @activity.defn(name="quarantine_ready_blob")
        def quarantine_ready_blob(inp: QuarantineReadyInput) -> QuarantinedBlob:
            with self.lock:
                self.steps.append(("quarantine_ready_blob", inp.sha256))
            assert inp.stage == "scan" and inp.state.detail == "Conveyor.Test.New FOUND"
            queued = EnqueueWebhooksResult(delivery_ids=[], task_queue="webhooks")
            return QuarantinedBlob(True, "quarantine", self.public, ["f"], queued)

        @activity.defn(name="unpublish_blob")
        def unpublish_blob(inp: UnpublishInput) -> None:
            with self.lock:
                self.steps.append(("unpublish_blob", inp.sha256))

        @activity.defn(name="quarantine_object")
        def quarantine_object(inp: QuarantineInput) -> None:
            assert inp.quarantine_bucket == "quarantine"
            with self.lock:
                self.steps.append(("quarantine_object", inp.blob.sha256))

        return [
            stage_scan,
            quarantine_ready_blob,
            unpublish_blob,
            quarantine_object,
            count_reprocess,
            list_reprocess_batch,
            make_thumbnails,
            ocr_blob,
            record_blob_stage,
            plan_builtin_stages,
            stage_thumbnails,
            stage_ocr,
        ]


async def _reprocess(env: WorkflowEnvironment, stubs: Stubs, **changes: Any) -> ReprocessProgress:
    queue = f"test-{uuid.uuid4()}"
    values: dict[str, Any] = {"stage": "thumbnails", "media_task_queue": queue}
    values.update(changes)
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[ReprocessWorkflow],
        workflow_runner=WORKFLOW_RUNNER,
        activities=stubs.activities(),
        activity_executor=ThreadPoolExecutor(8),
    ):
        handle = await env.client.start_workflow(
            ReprocessWorkflow.run,
            ReprocessInput(**values),
            id=f"reprocess-test-{uuid.uuid4()}",
            task_queue=queue,
        )
        result: ReprocessProgress = await handle.result()
        assert await handle.query(ReprocessWorkflow.progress) == result
        return result


async def test_reprocess_pages_throttles_counts_and_continues_as_new(
    env: WorkflowEnvironment,
) -> None:
    blobs = _blobs(8, text_at=5)
    stubs = Stubs(blobs=blobs, broken={blobs[2].sha256}, delay=0.2)

    result = await _reprocess(
        env, stubs, page_size=3, pages_per_run=1, max_concurrency=2, thumbnail_sizes=[64]
    )

    assert (result.total, result.seen, result.done, result.failed, result.skipped) == (
        8,
        8,
        6,
        1,
        1,
    )
    assert result.finished and result.runs == 3 and result.cursor == blobs[-1].sha256
    assert result.failures == [ReprocessFailure(blobs[2].sha256, "image data is truncated")]
    assert [p.after_sha256 for p in stubs.pages] == [None, blobs[2].sha256, blobs[5].sha256]
    assert stubs.most_running == 2  # throttled, yet concurrent
    # The text file is skipped by the stage's plan, with no activity.
    assert stubs.sizes == [[64]] * 7
    recorded = sorted(r.sha256 for r in stubs.records)
    assert recorded == sorted(b.sha256 for i, b in enumerate(blobs) if i not in (2, 5))
    record = stubs.records[0]
    assert record.stage == "thumbnails" and record.state.status == StageStatus.SUCCEEDED
    assert record.thumbnails is not None and record.thumbnails[0].size == 64
    assert record.metadata == {"width": 64}


async def test_reprocess_a_full_last_page_ends_on_the_empty_one(env: WorkflowEnvironment) -> None:
    stubs = Stubs(blobs=_blobs(4))

    result = await _reprocess(env, stubs, stage="ocr", page_size=2, pages_per_run=10)

    assert (result.seen, result.done, result.runs) == (4, 4, 1)
    assert len(stubs.pages) == 3 and stubs.records[0].thumbnails is None
    assert stubs.records[0].state.detail == "eng, 1 page"


async def test_reprocess_nothing_matching_finishes_at_once(env: WorkflowEnvironment) -> None:
    result = await _reprocess(env, Stubs(blobs=[]))

    assert result == ReprocessProgress(stage="thumbnails", total=0, finished=True)


async def test_reprocess_refuses_an_unknown_stage(env: WorkflowEnvironment) -> None:
    with pytest.raises(WorkflowFailureError) as caught:
        await _reprocess(env, Stubs(blobs=[]), stage="nope")

    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.message == "cannot reprocess stage 'nope': it is not installed"


@pytest.mark.parametrize("public", [False, True])
async def test_a_rescan_takes_down_what_it_now_finds_and_records_the_rest(
    env: WorkflowEnvironment, public: bool
) -> None:
    blobs = _blobs(4)
    infected = blobs[1].sha256
    stubs = Stubs(blobs=blobs, infected={infected}, public=public)

    result = await _reprocess(env, stubs, stage="scan", max_concurrency=1)

    assert (result.seen, result.done, result.quarantined, result.failed) == (4, 3, 1, 0)
    # Its files first (no download answered), then the public copy, then the bytes.
    expected = ["quarantine_ready_blob", "unpublish_blob", "quarantine_object"]
    if not public:
        expected.remove("unpublish_blob")
    assert stubs.steps == [(step, infected) for step in expected]
    recorded = {r.sha256: r.state for r in stubs.records}
    assert infected not in recorded and len(recorded) == 3
    assert all(s.detail == "clean" and s.status is StageStatus.SUCCEEDED for s in recorded.values())

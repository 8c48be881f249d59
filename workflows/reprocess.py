"""ReprocessWorkflow: re-runs one stage over many ready blobs, e.g. thumbnails after a size was
added (`conveyor reprocess`). Id `reprocess-<stage>-<timestamp>` unless one is given.

Pages through the matching ready blobs by SHA-256, runs the stage's own activity (the one
ingest uses, on its plugin's queue, with its timeouts and retries) for each, at most
`max_concurrency` at once, and records each new outcome on the blob and its ready files; a
gate (the scan, after a signature update) that now refuses a blob's bytes has them taken
down instead, every file holding them quarantined. A blob that fails is counted (and the
first few named), never fatal. Every `pages_per_run` pages it continues as new with its
cursor and counters, so its history stays small and a restarted worker resumes from the
last finished page.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.metadata import MetadataActivities
    from activities.outcome import OutcomeActivities
    from activities.publish import PublishActivities
    from activities.reprocess import ReprocessActivities
    from conveyor_core.stages import PlannedStage
    from conveyor_core.types import (
        REPROCESS_STAGES,
        BlobRef,
        QuarantinedBlob,
        QuarantineReadyInput,
        RecordStageInput,
        ReprocessBatch,
        ReprocessBatchInput,
        ReprocessFailure,
        ReprocessInput,
        ReprocessProgress,
        StageState,
        StageStatus,
        Thumbnail,
        UnpublishInput,
    )
    from workflows.ingest import (
        DATABASE_RETRY,
        STORE_RETRY,
        failure_reason,
        make_thumbnails,
        ocr_blob,
        quarantine_blob,
    )
    from workflows.stage_runs import plan_stages, run_stage
    from workflows.webhooks import start_deliveries

MAX_FAILURES_KEPT = 20
# Any installed stage but a gate, run as its plugin says (before: thumbnails or OCR only).
STAGE_PLUGINS_PATCH = "reprocess-stage-plugins"
# A gate too (the scan, with newer signatures): what it refuses now is taken down.
GATES_PATCH = "reprocess-gates"


def reprocess_workflow_id(stage: str, suffix: str) -> str:
    return f"reprocess-{stage}-{suffix}"


@workflow.defn
class ReprocessWorkflow:
    def __init__(self) -> None:
        self._progress = ReprocessProgress(stage="")
        self._in_flight = 0
        self._planned: PlannedStage | None = None

    @workflow.query
    def progress(self) -> ReprocessProgress:
        return self._progress

    @workflow.run
    async def run(self, inp: ReprocessInput) -> ReprocessProgress:
        if workflow.patched(STAGE_PLUGINS_PATCH):
            self._planned = (await plan_stages("", [inp.stage])).get(inp.stage)
            refused_gate = self._planned is not None and self._planned.gate
            if self._planned is None or (refused_gate and not workflow.patched(GATES_PATCH)):
                why = "is not installed" if self._planned is None else "is a gate"
                raise ApplicationError(
                    f"cannot reprocess stage {inp.stage!r}: it {why}",
                    type="InvalidReprocessInput",
                    non_retryable=True,
                )
        elif inp.stage not in REPROCESS_STAGES:
            raise ApplicationError(
                f"cannot reprocess stage {inp.stage!r}; one of {', '.join(REPROCESS_STAGES)}",
                type="InvalidReprocessInput",
                non_retryable=True,
            )
        if inp.progress is None:
            self._progress = ReprocessProgress(stage=inp.stage)
            self._progress.total = await workflow.execute_activity_method(
                ReprocessActivities.count_reprocess,
                inp.filter,
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=DATABASE_RETRY,
            )
        else:
            self._progress = dataclasses.replace(inp.progress, runs=inp.progress.runs + 1)
        pages = 0
        while True:
            batch: ReprocessBatch = await workflow.execute_activity_method(
                ReprocessActivities.list_reprocess_batch,
                ReprocessBatchInput(
                    filter=inp.filter, after_sha256=self._progress.cursor, limit=inp.page_size
                ),
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=DATABASE_RETRY,
            )
            self._progress.seen += len(batch.blobs)
            await self._run_page(inp, batch.blobs)
            if batch.blobs:
                self._progress.cursor = batch.blobs[-1].sha256
            pages += 1
            if len(batch.blobs) < inp.page_size:
                break
            if pages >= inp.pages_per_run or workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(dataclasses.replace(inp, progress=self._progress))
        self._progress.finished = True
        return self._progress

    async def _run_page(self, inp: ReprocessInput, blobs: list[BlobRef]) -> None:
        """Every blob of the page, at most `max_concurrency` at once; returns when all ended."""
        limit = max(1, inp.max_concurrency)
        started = []
        for blob in blobs:
            await workflow.wait_condition(lambda: self._in_flight < limit)
            self._in_flight += 1
            started.append(asyncio.ensure_future(self._one(inp, blob)))
        await workflow.wait_condition(lambda: self._in_flight == 0)
        for task in started:
            task.result()  # none raises; a bug in _one surfaces here, not silently

    async def _one(self, inp: ReprocessInput, blob: BlobRef) -> None:
        try:
            metadata = None
            if self._planned is not None:
                ran = await self._run_planned(inp, self._planned, blob)
                if ran is None:  # the gate refused the bytes: taken down
                    self._progress.quarantined += 1
                    return
                state, thumbnails, metadata = ran
            else:
                state, thumbnails = await self._run_stage(inp, blob)
            if state.status is StageStatus.SKIPPED:
                self._progress.skipped += 1
                return
            await workflow.execute_activity_method(
                MetadataActivities.record_blob_stage,
                RecordStageInput(
                    sha256=blob.sha256,
                    stage=inp.stage,
                    state=state,
                    thumbnails=thumbnails,
                    metadata=metadata,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=DATABASE_RETRY,
            )
            self._progress.done += 1
        except ActivityError as e:
            self._progress.failed += 1
            if len(self._progress.failures) < MAX_FAILURES_KEPT:
                self._progress.failures.append(
                    ReprocessFailure(sha256=blob.sha256, reason=failure_reason(e))
                )
        finally:
            self._in_flight -= 1

    async def _run_planned(
        self, inp: ReprocessInput, planned: PlannedStage, blob: BlobRef
    ) -> tuple[StageState, list[Thumbnail] | None, dict[str, Any] | None] | None:
        """The stage's new outcome to record; None when a gate refused the bytes and they
        were taken down instead."""
        skipped = planned.skip_reason(blob.content_type)
        if skipped is not None:
            return StageState(StageStatus.SKIPPED, skipped, 0), None, None
        started = workflow.now()
        # Bytes too large to scan were served unscanned by their owner's choice: a re-scan
        # skips them again rather than failing them.
        options = {"thumbnail_sizes": list(inp.thumbnail_sizes), "scan_oversize": "serve_unscanned"}
        out = await run_stage(planned, blob, options)
        duration_ms = int((workflow.now() - started).total_seconds() * 1000)
        if out.skipped_reason is not None:
            return StageState(StageStatus.SKIPPED, out.skipped_reason, duration_ms), None, None
        if planned.gate and out.verdict is not None:
            verdict = StageState(StageStatus.SUCCEEDED, out.verdict, duration_ms)
            await self._take_down(planned, blob, verdict)
            return None
        thumbnails = out.thumbnails if "derivatives" in planned.writes else None
        state = StageState(StageStatus.SUCCEEDED, out.detail, duration_ms)
        return state, thumbnails, out.metadata or None

    async def _take_down(self, planned: PlannedStage, blob: BlobRef, verdict: StageState) -> None:
        """Bytes served until now that the gate refuses (a re-scan found something): every
        file holding them quarantined, with its events and webhooks, in one transaction
        first (no download is answered from then on), then the public copy taken down
        and the bytes moved out of every client's reach, as ingest does with what it
        refuses."""
        done: QuarantinedBlob = await workflow.execute_activity_method(
            OutcomeActivities.quarantine_ready_blob,
            QuarantineReadyInput(sha256=blob.sha256, stage=planned.name, state=verdict),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=DATABASE_RETRY,
        )
        if not done.quarantined:
            return
        if done.public:
            await workflow.execute_activity_method(
                PublishActivities.unpublish_blob,
                UnpublishInput(sha256=blob.sha256),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=STORE_RETRY,
            )
        await quarantine_blob(blob, done.quarantine_bucket)
        await start_deliveries(done.webhooks)

    async def _run_stage(
        self, inp: ReprocessInput, blob: BlobRef
    ) -> tuple[StageState, list[Thumbnail] | None]:
        started = workflow.now()
        thumbnails: list[Thumbnail] | None = None
        if inp.stage == "thumbnails":
            made = await make_thumbnails(blob, inp.thumbnail_sizes, inp.media_task_queue)
            skipped, detail, thumbnails = made.skipped_reason, made.detail, made.thumbnails
        else:
            ocr = await ocr_blob(blob, inp.media_task_queue)
            skipped, detail = ocr.skipped_reason, ocr.detail
        duration_ms = int((workflow.now() - started).total_seconds() * 1000)
        if skipped is not None:
            return StageState(StageStatus.SKIPPED, skipped, duration_ms), None
        return StageState(StageStatus.SUCCEEDED, detail, duration_ms), thumbnails

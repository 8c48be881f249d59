"""IngestWorkflow: one per upload, id `ingest-<file_id>` (DESIGN.md §1).

Waits for the object (a store event, or a reconcile HEAD when no event came), verifies it
and commits the file. Deterministic: every side effect is an activity.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.metadata import MetadataActivities
    from activities.store import StoreActivities
    from activities.verify import VerifyActivities
    from conveyor_core.types import (
        CommitReadyInput,
        FileStatus,
        FinalizeInput,
        IngestInput,
        IngestProgress,
        IngestResult,
        ObjectProbe,
        ObjectRef,
        ObjectUploaded,
        StageState,
        StageStatus,
        VerifyInput,
        VerifyResult,
    )

STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
)
DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,  # a committed outcome must never be lost: retry until Postgres is back
    non_retryable_error_types=["FileMissing", "FileStatusConflict"],
)
# The reconcile probe backs off, so a day-long wait costs a few hundred events, not thousands.
RECONCILE_MAX_INTERVAL = timedelta(minutes=10)


def workflow_id_for(file_id: str) -> str:
    return f"ingest-{file_id}"


@workflow.defn
class IngestWorkflow:
    def __init__(self) -> None:
        self._uploaded: ObjectUploaded | None = None
        self._cancel_requested = False
        self._progress = IngestProgress(
            file_id="",
            status=FileStatus.AWAITING_UPLOAD,
            stages={"verify": StageState()},
        )

    @workflow.signal
    def object_uploaded(self, event: ObjectUploaded) -> None:
        # Events may be delivered twice: only the first one counts.
        if self._uploaded is None:
            self._uploaded = event

    @workflow.signal
    def cancel(self) -> None:
        self._cancel_requested = True

    @workflow.query
    def status(self) -> IngestProgress:
        return self._progress

    @workflow.run
    async def run(self, inp: IngestInput) -> IngestResult:
        self._progress.file_id = inp.file_id
        ref = ObjectRef(bucket=inp.bucket, key=inp.object_key)

        if not await self._wait_for_object(inp, ref):
            status = FileStatus.CANCELLED if self._cancel_requested else FileStatus.EXPIRED
            detail = (
                "the upload was cancelled"
                if self._cancel_requested
                else f"no object arrived within {inp.expire_after_seconds} s"
            )
            await self._delete(ref)
            self._skip_pending(detail)
            return await self._finish_without_ready(inp, status, detail)

        self._progress.status = FileStatus.PROCESSING
        verified = await self._verify(inp)
        if not verified.ok:
            await self._delete(ref)
            return await self._finish_without_ready(
                inp, FileStatus.FAILED, f"verify: {verified.detail}"
            )

        assert verified.sha256 is not None and verified.size is not None
        await workflow.execute_activity_method(
            MetadataActivities.commit_ready,
            CommitReadyInput(
                file_id=inp.file_id,
                bucket=inp.bucket,
                object_key=inp.object_key,
                sha256=verified.sha256,
                size=verified.size,
                content_type=verified.content_type or "application/octet-stream",
                stages=self._progress.stages,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DATABASE_RETRY,
        )
        self._progress.status = FileStatus.READY
        return IngestResult(status=FileStatus.READY)

    async def _wait_for_object(self, inp: IngestInput, ref: ObjectRef) -> bool:
        """True once the object is there; False if the upload expired or was cancelled."""
        deadline = workflow.now() + timedelta(seconds=inp.expire_after_seconds)
        interval = timedelta(seconds=inp.reconcile_after_seconds)
        while self._uploaded is None and not self._cancel_requested:
            remaining = deadline - workflow.now()
            if remaining <= timedelta(0):
                return False
            try:
                await workflow.wait_condition(
                    lambda: self._uploaded is not None or self._cancel_requested,
                    timeout=min(interval, remaining),
                )
            except TimeoutError:
                probe = await self._probe(ref)
                if probe.exists and self._uploaded is None:
                    self._uploaded = ObjectUploaded(
                        bucket=ref.bucket, key=ref.key, size=probe.size, source="reconcile"
                    )
                interval = min(interval * 2, RECONCILE_MAX_INTERVAL)
        return self._uploaded is not None and not self._cancel_requested

    async def _verify(self, inp: IngestInput) -> VerifyResult:
        stage = self._progress.stages["verify"]
        stage.status = StageStatus.RUNNING
        started = workflow.now()
        result = await workflow.execute_activity_method(
            VerifyActivities.verify_object,
            VerifyInput(
                bucket=inp.bucket,
                key=inp.object_key,
                declared_size=inp.declared_size,
                declared_sha256=inp.declared_sha256,
            ),
            start_to_close_timeout=timedelta(hours=2),
            heartbeat_timeout=timedelta(seconds=60),
            retry_policy=STORE_RETRY,
        )
        elapsed = workflow.now() - started
        self._progress.stages["verify"] = replace(
            stage,
            status=StageStatus.SUCCEEDED if result.ok else StageStatus.FAILED,
            detail=result.detail if not result.ok else result.content_type,
            duration_ms=int(elapsed.total_seconds() * 1000),
        )
        return result

    async def _probe(self, ref: ObjectRef) -> ObjectProbe:
        return await workflow.execute_activity_method(
            StoreActivities.probe_object,
            ref,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=STORE_RETRY,
        )

    async def _delete(self, ref: ObjectRef) -> None:
        await workflow.execute_activity_method(
            StoreActivities.delete_object,
            ref,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=STORE_RETRY,
        )

    def _skip_pending(self, reason: str) -> None:
        for name, stage in self._progress.stages.items():
            if stage.status in (StageStatus.PENDING, StageStatus.RUNNING):
                self._progress.stages[name] = replace(
                    stage, status=StageStatus.SKIPPED, detail=reason
                )

    async def _finish_without_ready(
        self, inp: IngestInput, status: FileStatus, detail: str
    ) -> IngestResult:
        await workflow.execute_activity_method(
            MetadataActivities.finalize_file,
            FinalizeInput(
                file_id=inp.file_id, status=status, detail=detail, stages=self._progress.stages
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DATABASE_RETRY,
        )
        self._progress.status = status
        self._progress.detail = detail
        return IngestResult(status=status, detail=detail)

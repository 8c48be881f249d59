"""SweepWorkflow: what the relay and the workflows left behind, swept on a schedule.

Started every `sweep_interval_seconds` by the Temporal schedule `conveyor-sweep` (made by the
worker that serves the ingest queue), or once by `conveyor sweep`. Strays under `incoming/`
are removed, abandoned multipart uploads aborted, and deletions that did not finish started
again as their own `delete-<file_id>` workflows.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.sweep import SweepActivities
    from conveyor_core.types import (
        DeleteFileInput,
        SweepBatchInput,
        SweepCount,
        SweepInput,
        SweepResult,
        UnfinishedDeletions,
    )
    from workflows.delete import DeleteFileWorkflow, delete_workflow_id
    from workflows.ingest import DATABASE_RETRY, STORE_RETRY

SCHEDULE_ID = "conveyor-sweep"
SWEEP_TIMEOUT = timedelta(minutes=10)
SWEEP_HEARTBEAT = timedelta(seconds=60)


@workflow.defn
class SweepWorkflow:
    @workflow.run
    async def run(self, inp: SweepInput) -> SweepResult:
        batch = SweepBatchInput(grace_seconds=inp.grace_seconds)
        strays: SweepCount = await workflow.execute_activity_method(
            SweepActivities.sweep_strays,
            batch,
            start_to_close_timeout=SWEEP_TIMEOUT,
            heartbeat_timeout=SWEEP_HEARTBEAT,
            retry_policy=STORE_RETRY,
        )
        multipart: SweepCount = await workflow.execute_activity_method(
            SweepActivities.sweep_multipart_uploads,
            batch,
            start_to_close_timeout=SWEEP_TIMEOUT,
            heartbeat_timeout=SWEEP_HEARTBEAT,
            retry_policy=STORE_RETRY,
        )
        unfinished: UnfinishedDeletions = await workflow.execute_activity_method(
            SweepActivities.list_unfinished_deletions,
            batch,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=DATABASE_RETRY,
        )
        restarted = 0
        for file_id in unfinished.file_ids:
            try:
                await workflow.start_child_workflow(
                    DeleteFileWorkflow.run,
                    DeleteFileInput(file_id=file_id),
                    id=delete_workflow_id(file_id),
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                )
            except WorkflowAlreadyStartedError:
                continue  # it is running now: nothing to take up
            restarted += 1
        result = SweepResult(
            strays_removed=strays.removed,
            multipart_aborted=multipart.removed,
            deletions_restarted=restarted,
        )
        workflow.logger.info("sweep: %s", result)
        return result

"""Running a planned stage's activity, as ingest, retry and reprocess all do: the activity,
queue, timeouts and retries are the plan's (its plugin's spec, recorded in the history)."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.stage_plan import StagePlanActivities
    from conveyor_core.stages import (
        BatchedStage,
        PlannedStage,
        PlanStagesInput,
        StageBatchInput,
        StageBatchOutput,
        StageInput,
        StageOutput,
        StagePlan,
    )
    from conveyor_core.types import BlobRef

PLAN_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10)
)


def stage_retry_policy(stage: PlannedStage) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=stage.retry_initial_seconds),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=stage.max_attempts,
        non_retryable_error_types=list(stage.non_retryable_errors),
    )


def run_stage(
    stage: PlannedStage, blob: BlobRef, stage_options: dict[str, Any], **options: Any
) -> Awaitable[StageOutput]:
    heartbeat = stage.heartbeat_seconds
    return workflow.execute_activity(
        stage.activity,
        StageInput(blob=blob, stage=stage.name, options=stage_options),
        result_type=StageOutput,
        task_queue=stage.task_queue,
        start_to_close_timeout=timedelta(seconds=stage.start_to_close_seconds),
        heartbeat_timeout=timedelta(seconds=heartbeat) if heartbeat else None,
        retry_policy=stage_retry_policy(stage),
        **options,
    )


def run_stage_batch(
    stages: list[PlannedStage], blob: BlobRef, stage_options: dict[str, Any], **options: Any
) -> Awaitable[StageBatchOutput]:
    """The stages of one batch in one activity on their queue. It is one attempt at each:
    tried once, as a whole (a stage's own error is in its result, not the batch's)."""
    heartbeat = min(s.heartbeat_seconds or 0 for s in stages)  # 0: one of them has none
    return workflow.execute_activity(
        "stage_batch",
        StageBatchInput(
            blob=blob,
            stages=[BatchedStage(s.name, s.activity, list(s.non_retryable_errors)) for s in stages],
            options=stage_options,
        ),
        result_type=StageBatchOutput,
        task_queue=stages[0].task_queue,
        start_to_close_timeout=timedelta(seconds=sum(s.start_to_close_seconds for s in stages)),
        heartbeat_timeout=timedelta(seconds=heartbeat) if heartbeat else None,
        retry_policy=RetryPolicy(maximum_attempts=1),
        **options,
    )


async def plan_stages(
    content_type: str, names: list[str] | None = None, size: int | None = None
) -> StagePlan:
    """The installed stages for this type (or the named ones), from the worker's registry."""
    plan: StagePlan = await workflow.execute_local_activity_method(
        StagePlanActivities.plan_stages,
        PlanStagesInput(content_type=content_type, names=names, size=size),
        start_to_close_timeout=timedelta(seconds=10),
        retry_policy=PLAN_RETRY,
    )
    return plan

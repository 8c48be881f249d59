"""The sweeper from the outside: its Temporal schedule, made (or brought up to date) by the
worker that serves the ingest queue, so a deployment on a cluster has it as soon as it has
workers; and one sweep run now, for `conveyor sweep`."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from conveyor_core.settings import Settings
from conveyor_core.types import SweepInput, SweepResult
from workflows.sweep import SCHEDULE_ID, SweepWorkflow

log = logging.getLogger(__name__)


def sweep_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            SweepWorkflow.run,
            SweepInput(),
            id="sweep",
            task_queue=settings.ingest_task_queue,
            execution_timeout=timedelta(hours=1),
        ),
        spec=ScheduleSpec(
            intervals=[
                ScheduleIntervalSpec(every=timedelta(seconds=settings.sweep_interval_seconds))
            ]
        ),
        # A sweep still running when the next is due: the next one is skipped.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_sweep_schedule(client: Client, settings: Settings) -> None:
    schedule = sweep_schedule(settings)
    try:
        await client.create_schedule(SCHEDULE_ID, schedule)
        log.info("created schedule %s (every %d s)", SCHEDULE_ID, settings.sweep_interval_seconds)
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(SCHEDULE_ID).update(update)


async def sweep_now(client: Client, settings: Settings, grace_seconds: int | None) -> SweepResult:
    """One sweep, waited for (the schedule's own runs are left alone)."""
    result: SweepResult = await client.execute_workflow(
        SweepWorkflow.run,
        SweepInput(grace_seconds=grace_seconds),
        id=f"sweep-now-{uuid.uuid4()}",
        task_queue=settings.ingest_task_queue,
        execution_timeout=timedelta(hours=1),
    )
    return result

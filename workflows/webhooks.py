"""WebhookDeliveryWorkflow: one per delivery, id `webhook-<delivery_id>`.

Started (and abandoned) by the IngestWorkflow once a file ends, so ingest never waits for a
receiver. It POSTs the delivery until a 2xx answer, retrying with exponential backoff, and
marks the delivery failed once its deadline passes: nothing stays pending forever.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    TimeoutError,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    from activities.webhooks import BACKOFF_COEFFICIENT, WebhookActivities
    from conveyor_core.types import (
        WEBHOOK_REFUSED_ERROR,
        DeliverWebhookInput,
        DeliverWebhookResult,
        DeliveryStatus,
        EnqueueWebhooksResult,
        FailDeliveryInput,
    )

# Recording the outcome must not be lost: retried until Postgres answers.
RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
)
# One attempt: the POST (its own wall-clock deadline, 10 s by default, at most 50 s) and a
# few short transactions.
ATTEMPT_TIMEOUT = timedelta(seconds=60)
# The attempt heartbeats every 2 s: a worker that died mid-attempt is noticed in this much,
# not at ATTEMPT_TIMEOUT. (Only the activity's options change: replay compares commands'
# types and ids, so running workflows need no `workflow.patched` for it.)
ATTEMPT_HEARTBEAT_TIMEOUT = timedelta(seconds=20)


def delivery_workflow_id(delivery_id: str) -> str:
    return f"webhook-{delivery_id}"


def delivery_retry(inp: DeliverWebhookInput) -> RetryPolicy:
    """Every answer but a 2xx is retried, 4xx included (receivers get misconfigured and
    fixed); only a refusal (endpoint deleted, private address) stops early. The activity
    names each wait itself (`next_retry_delay`): the backoff of the attempts it made, or a
    short one while its tenant has no free slot; these intervals apply otherwise."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=inp.retry_initial_seconds),
        backoff_coefficient=BACKOFF_COEFFICIENT,
        maximum_interval=timedelta(seconds=inp.retry_max_interval_seconds),
        maximum_attempts=0,  # bounded by the deadline (schedule_to_close) instead
        non_retryable_error_types=[WEBHOOK_REFUSED_ERROR],
    )


@workflow.defn
class WebhookDeliveryWorkflow:
    @workflow.run
    async def run(self, inp: DeliverWebhookInput) -> DeliverWebhookResult:
        try:
            return await workflow.execute_activity_method(
                WebhookActivities.deliver_webhook,
                inp,
                task_queue=inp.task_queue,
                start_to_close_timeout=ATTEMPT_TIMEOUT,
                heartbeat_timeout=ATTEMPT_HEARTBEAT_TIMEOUT,
                schedule_to_close_timeout=timedelta(seconds=inp.deadline_seconds),
                retry_policy=delivery_retry(inp),
            )
        except ActivityError as e:
            reason = _give_up_reason(e, inp)
        await workflow.execute_activity_method(
            WebhookActivities.fail_webhook_delivery,
            FailDeliveryInput(delivery_id=inp.delivery_id, reason=reason),
            task_queue=inp.task_queue,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RECORD_RETRY,
        )
        return DeliverWebhookResult(status=DeliveryStatus.FAILED, detail=reason)


def _give_up_reason(error: ActivityError, inp: DeliverWebhookInput) -> str:
    cause = error.cause
    # Past the deadline the last attempt's own failure comes back with retry state TIMEOUT
    # (or a timeout, if the deadline cut an attempt short).
    if isinstance(cause, TimeoutError) or error.retry_state == RetryState.TIMEOUT:
        seconds = inp.deadline_seconds
        deadline = f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"
        return f"gave up: no 2xx answer within the {deadline} delivery deadline"
    if isinstance(cause, ApplicationError) and cause.message:
        return cause.message
    return str(cause or error)


async def start_deliveries(queued: EnqueueWebhooksResult) -> None:
    """Starts (and abandons) one WebhookDeliveryWorkflow per enqueued delivery, from the
    workflow that committed the outcome they announce."""

    async def start(delivery_id: str) -> None:
        try:
            await workflow.start_child_workflow(
                WebhookDeliveryWorkflow.run,
                DeliverWebhookInput(
                    delivery_id=delivery_id,
                    task_queue=queued.task_queue,
                    retry_initial_seconds=queued.retry_initial_seconds,
                    retry_max_interval_seconds=queued.retry_max_interval_seconds,
                    deadline_seconds=queued.deadline_seconds,
                ),
                id=delivery_workflow_id(delivery_id),
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            )
        except WorkflowAlreadyStartedError:
            pass  # already delivering (this workflow was reset): that one carries on

    await asyncio.gather(*(start(d) for d in queued.delivery_ids))

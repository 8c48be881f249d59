"""Webhook delivery logic against a real Temporal dev server, with stub activities: the
ingest workflow hands each delivery to its own abandoned child, which retries and gives up
at its deadline."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from temporalio import activity
from temporalio.client import Client, WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from conveyor_core.types import (
    WEBHOOK_REFUSED_ERROR,
    DeliverWebhookInput,
    DeliverWebhookResult,
    DeliveryStatus,
    FailDeliveryInput,
    FileStatus,
    ObjectUploaded,
)
from tests.helpers import ingest_replayer
from tests.workflows.test_ingest_workflow import Stubs, _input, env  # noqa: F401 - env: fixture
from workers.temporal_worker import WORKFLOW_RUNNER
from workflows.ingest import IngestWorkflow
from workflows.webhooks import (
    ATTEMPT_HEARTBEAT_TIMEOUT,
    ATTEMPT_TIMEOUT,
    WebhookDeliveryWorkflow,
    delivery_workflow_id,
)

# Made by the IngestWorkflow of the commit before webhooks (a file through to ready).
BEFORE_WEBHOOKS = Path(__file__).parent / "histories" / "ingest_ready_before_webhooks.json"


@dataclass
class DeliveryStubs:
    """deliver_webhook answers from `outcomes` in turn (then the last one forever)."""

    outcomes: list[Callable[[], DeliverWebhookResult]] = field(
        default_factory=lambda: [lambda: DeliverWebhookResult(DeliveryStatus.DELIVERED, 1, 200)]
    )
    delivered: list[DeliverWebhookInput] = field(default_factory=list)
    failed: list[FailDeliveryInput] = field(default_factory=list)

    def activities(self) -> list[object]:
        @activity.defn(name="deliver_webhook")
        def deliver_webhook(inp: DeliverWebhookInput) -> DeliverWebhookResult:
            self.delivered.append(inp)
            outcome = self.outcomes[min(len(self.delivered), len(self.outcomes)) - 1]
            return outcome()

        @activity.defn(name="fail_webhook_delivery")
        def fail_webhook_delivery(inp: FailDeliveryInput) -> None:
            self.failed.append(inp)

        return [deliver_webhook, fail_webhook_delivery]


def _refused() -> DeliverWebhookResult:
    raise ApplicationError(
        "the endpoint was deleted", type=WEBHOOK_REFUSED_ERROR, non_retryable=True
    )


def _unreachable() -> DeliverWebhookResult:
    raise ApplicationError("POST failed: ConnectError: refused", type="WebhookUnreachable")


async def _deliver(
    client: Client, stubs: DeliveryStubs, deadline_seconds: float = 30
) -> DeliverWebhookResult:
    queue = f"test-{uuid.uuid4()}"
    inp = DeliverWebhookInput(
        delivery_id=str(uuid.uuid4()),
        task_queue=queue,
        retry_initial_seconds=0.1,
        retry_max_interval_seconds=0.3,
        deadline_seconds=deadline_seconds,
    )
    async with Worker(
        client,
        task_queue=queue,
        workflows=[WebhookDeliveryWorkflow],
        workflow_runner=WORKFLOW_RUNNER,
        activities=stubs.activities(),
        activity_executor=ThreadPoolExecutor(4),
    ):
        return await client.execute_workflow(
            WebhookDeliveryWorkflow.run,
            inp,
            id=delivery_workflow_id(inp.delivery_id),
            task_queue=queue,
        )


async def test_ingest_starts_one_abandoned_delivery_per_enqueued_webhook(
    env: WorkflowEnvironment,  # noqa: F811
) -> None:
    queue = f"test-{uuid.uuid4()}"
    stubs = Stubs(webhook_deliveries=[str(uuid.uuid4()), str(uuid.uuid4())], webhook_queue=queue)
    deliveries = DeliveryStubs()
    inp = _input(queue)
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[IngestWorkflow, WebhookDeliveryWorkflow],
        workflow_runner=WORKFLOW_RUNNER,
        activities=[*stubs.activities(), *deliveries.activities()],
        activity_executor=ThreadPoolExecutor(8),
    ):
        handle = await env.client.start_workflow(
            IngestWorkflow.run, inp, id=f"ingest-{inp.file_id}", task_queue=queue
        )
        await handle.signal(
            IngestWorkflow.object_uploaded, ObjectUploaded(bucket=inp.bucket, key=inp.object_key)
        )
        result = await handle.result()
        assert result.status == FileStatus.READY
        assert stubs.calls["enqueue_webhooks"] == 1
        assert stubs.enqueued[0].file_id == inp.file_id
        assert stubs.enqueued[0].status == FileStatus.READY
        for delivery_id in stubs.webhook_deliveries:
            child = env.client.get_workflow_handle_for(
                WebhookDeliveryWorkflow.run, delivery_workflow_id(delivery_id)
            )
            outcome = await child.result()
            assert outcome.status == DeliveryStatus.DELIVERED
            description = await child.describe()
            assert description.parent_id == handle.id
    assert sorted(d.delivery_id for d in deliveries.delivered) == sorted(stubs.webhook_deliveries)
    # The retry policy comes from the enqueue activity (the worker's settings).
    assert {d.retry_max_interval_seconds for d in deliveries.delivered} == {0.2}


async def test_ingest_without_webhooks_starts_no_child(env: WorkflowEnvironment) -> None:  # noqa: F811
    stubs = Stubs()
    queue = f"test-{uuid.uuid4()}"
    inp = _input(queue, expire=1, reconcile=3600)
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
        assert (await handle.result()).status == FileStatus.EXPIRED
    assert stubs.enqueued[0].status == FileStatus.EXPIRED
    history = await handle.fetch_history()
    assert not any(
        e.HasField("start_child_workflow_execution_initiated_event_attributes")
        for e in history.events
    )


async def test_delivery_retries_until_the_receiver_answers(env: WorkflowEnvironment) -> None:  # noqa: F811
    delivered = lambda: DeliverWebhookResult(DeliveryStatus.DELIVERED, 3, 204)  # noqa: E731
    stubs = DeliveryStubs(outcomes=[_unreachable, _unreachable, delivered])
    result = await _deliver(env.client, stubs)
    assert result.status == DeliveryStatus.DELIVERED and result.status_code == 204
    assert len(stubs.delivered) == 3 and stubs.failed == []


async def test_delivery_fails_once_its_deadline_passes(env: WorkflowEnvironment) -> None:  # noqa: F811
    stubs = DeliveryStubs(outcomes=[_unreachable])
    result = await _deliver(env.client, stubs, deadline_seconds=2)
    assert result.status == DeliveryStatus.FAILED
    assert len(stubs.delivered) >= 2
    assert len(stubs.failed) == 1
    assert stubs.failed[0].reason == "gave up: no 2xx answer within the 2 s delivery deadline"


async def test_delivery_refused_stops_at_once(env: WorkflowEnvironment) -> None:  # noqa: F811
    stubs = DeliveryStubs(outcomes=[_refused])
    result = await _deliver(env.client, stubs)
    assert result.status == DeliveryStatus.FAILED and result.detail == "the endpoint was deleted"
    assert len(stubs.delivered) == 1


async def test_ingest_history_from_before_webhooks_still_replays() -> None:
    # workflow.patched("webhooks") keeps a workflow that ran before webhooks existed from
    # meeting a command its history does not have (queries of closed workflows replay it).
    history = WorkflowHistory.from_json("ingest-before-webhooks", BEFORE_WEBHOOKS.read_text())
    await ingest_replayer().replay_workflow(history)


async def test_delivery_attempt_must_heartbeat(env: WorkflowEnvironment) -> None:  # noqa: F811
    # The attempt heartbeats while it runs: a worker that died mid-attempt is noticed in
    # seconds, not when the attempt's 60 s are up.
    stubs = DeliveryStubs()
    result = await _deliver(env.client, stubs)
    assert result.status == DeliveryStatus.DELIVERED
    handle = env.client.get_workflow_handle(delivery_workflow_id(stubs.delivered[0].delivery_id))
    history = await handle.fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert [s.activity_type.name for s in scheduled] == ["deliver_webhook"]
    assert scheduled[0].heartbeat_timeout.ToTimedelta() == ATTEMPT_HEARTBEAT_TIMEOUT
    assert ATTEMPT_HEARTBEAT_TIMEOUT < ATTEMPT_TIMEOUT

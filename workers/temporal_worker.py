"""The Temporal worker process: one Worker per task queue in `settings.worker_queues`.

`ingest` runs the workflows (ingest, delete, webhook delivery, reprocess) and their light
activities (verify, dedup, metadata, store, publish, webhooks, reprocess paging, the stage
plan); the installed stages (entry points `conveyor.stages`) run on the queue each names:
`scan` (ClamAV), `media` (thumbnails, OCR, text), or a queue of their own, polled by the
`stages` role. Scale a stage by starting more processes that poll only its queue.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from typing import Any

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.dedup import DedupActivities
from activities.intake import IntakeActivities
from activities.metadata import MetadataActivities
from activities.ocr import OcrActivities
from activities.outcome import OutcomeActivities
from activities.publish import PublishActivities
from activities.reprocess import ReprocessActivities
from activities.scan import ScanActivities
from activities.seal import SealActivities
from activities.stage_batch import StageBatch, StageRun, batch_runs
from activities.stage_plan import StagePlanActivities
from activities.store import StoreActivities
from activities.sweep import SweepActivities
from activities.thumbnails import ThumbnailActivities
from activities.verify import VerifyActivities
from activities.webhooks import WebhookActivities
from conveyor_core.db.session import make_engine, make_session_factory
from conveyor_core.object_move import make_object_mover
from conveyor_core.objectstore import make_s3_client
from conveyor_core.payloads import DATA_CONVERTER
from conveyor_core.settings import Settings, get_settings
from conveyor_core.stage_registry import StageRegistryError, load_stage_plugins
from conveyor_core.stages import QUEUE_ROLES, StageContext, StagePlugin, resolve_queue
from observability.logging import configure_logging
from observability.metrics import ActivityMetricsInterceptor, serve_metrics
from observability.tracing import configure_tracing
from workers.sweeper import ensure_sweep_schedule
from workflows.delete import DeleteFileWorkflow
from workflows.ingest import IngestWorkflow
from workflows.reprocess import ReprocessWorkflow
from workflows.sweep import SweepWorkflow
from workflows.webhooks import WebhookDeliveryWorkflow

log = logging.getLogger(__name__)

INGEST_WORKFLOWS = [
    IngestWorkflow,
    DeleteFileWorkflow,
    WebhookDeliveryWorkflow,
    ReprocessWorkflow,
    SweepWorkflow,
]


def queue_activities(
    settings: Settings, plugins: Sequence[StagePlugin]
) -> dict[str, list[Callable[..., Any]]]:
    """Each task queue's activities, built once with the clients they share."""
    s3 = make_s3_client(settings)
    sessions = make_session_factory(
        make_engine(settings, pool_size=settings.worker_max_concurrent_activities)
    )
    verify = VerifyActivities(s3)
    store = StoreActivities(s3)
    seal = SealActivities(s3, make_object_mover(settings, s3), sessions)
    intake = IntakeActivities(seal, verify)
    dedup = DedupActivities(sessions)
    metadata = MetadataActivities(sessions, settings.quarantine_bucket)
    publish = PublishActivities(s3, settings, sessions)
    thumbnails = ThumbnailActivities(s3, settings)
    ocr = OcrActivities(s3, sessions, settings)
    webhooks = WebhookActivities(sessions, settings)
    outcome = OutcomeActivities(sessions, settings)
    reprocess = ReprocessActivities(sessions)
    sweep = SweepActivities(s3, sessions, settings)
    plan = StagePlanActivities([p.spec for p in plugins], settings)
    queues: dict[str, list[Callable[..., Any]]] = {
        settings.ingest_task_queue: [
            plan.plan_stages,
            intake.seal_and_verify,
            seal.seal_upload,
            verify.verify_object,
            store.probe_object,
            store.delete_object,
            store.discard_upload,
            store.delete_objects,
            store.quarantine_object,
            dedup.claim_blob,
            dedup.await_blob,
            dedup.claim_retry,
            outcome.commit_outcome,
            outcome.quarantine_ready_blob,
            metadata.commit_file,
            metadata.release_blob,
            metadata.finish_release,
            metadata.record_blob_stage,
            reprocess.count_reprocess,
            reprocess.list_reprocess_batch,
            publish.publish_blob,
            publish.unpublish_blob,
            webhooks.enqueue_webhooks,
            sweep.sweep_strays,
            sweep.sweep_multipart_uploads,
            sweep.list_unfinished_deletions,
        ],
        settings.webhooks_task_queue: [webhooks.deliver_webhook, webhooks.fail_webhook_delivery],
        # The typed stage activities of workflows that started before stages were plugins.
        settings.scan_task_queue: [ScanActivities(s3, settings).scan_blob],
        settings.media_task_queue: [thumbnails.make_thumbnails, ocr.ocr_blob],
    }
    context = StageContext(settings=settings, s3=s3, sessions=sessions)
    batchable: dict[str, dict[str, StageRun]] = {}
    for plugin in plugins:
        queue = resolve_queue(plugin.spec.task_queue, settings)
        functions = plugin.activities(context)
        queues.setdefault(queue, []).extend(functions)
        if plugin.spec.batchable:
            runs = batch_runs(functions)
            if plugin.spec.activity not in runs:
                why = f"stage {plugin.spec.name!r} is batchable: its activity must be synchronous"
                raise StageRegistryError(why)
            batchable.setdefault(queue, {}).update(runs)
    for queue, runs in batchable.items():
        queues[queue].append(StageBatch(runs).run)
    return queues


# The sandbox imports a workflow's module again for every run (about 5 ms of CPU a file)
# unless it is passed through. Ours hold constants, functions and classes only (no state a
# run could leave for the next; tests/unit/test_workflow_modules.py keeps it so), and every
# module they import is passed through already; the sandbox's checks of what a workflow
# calls (time, random, I/O, ...) still apply.
WORKFLOW_RESTRICTIONS = SandboxRestrictions.default.with_passthrough_modules("workflows")
WORKFLOW_RUNNER = SandboxedWorkflowRunner(restrictions=WORKFLOW_RESTRICTIONS)


def polled_queues(settings: Settings, plugins: Sequence[StagePlugin]) -> list[str]:
    """The task queues of this process's roles (settings.worker_queues), in order."""
    names = {
        "ingest": settings.ingest_task_queue,
        "scan": settings.scan_task_queue,
        "media": settings.media_task_queue,
        "webhooks": settings.webhooks_task_queue,
    }
    polled: list[str] = []
    for role in settings.worker_queues:
        if role == "stages":
            own = (p.spec.task_queue for p in plugins if p.spec.task_queue not in QUEUE_ROLES)
            polled.extend(q for q in own if q not in polled)
        elif names[role] not in polled:
            polled.append(names[role])
    return polled


def build_workers(client: Client, settings: Settings, executor: ThreadPoolExecutor) -> list[Worker]:
    plugins = load_stage_plugins(settings)
    activities = queue_activities(settings, plugins)
    workers = []
    for queue in polled_queues(settings, plugins):
        is_ingest = queue == settings.ingest_task_queue
        concurrency = (
            settings.media_concurrency
            if queue == settings.media_task_queue
            else settings.worker_max_concurrent_activities
        )
        workers.append(
            Worker(
                client,
                task_queue=queue,
                workflows=INGEST_WORKFLOWS if is_ingest else [],
                workflow_runner=WORKFLOW_RUNNER,
                activities=activities[queue],
                activity_executor=executor,
                max_concurrent_activities=concurrency,
                interceptors=[ActivityMetricsInterceptor()],
            )
        )
    return workers


async def main(settings: Settings) -> None:
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"{settings.host}:{settings.worker_sdk_metrics_port}"
            )
        )
    )
    client = await Client.connect(
        settings.temporal_target,
        namespace=settings.temporal_namespace,
        interceptors=[TracingInterceptor()],
        runtime=runtime,
        data_converter=DATA_CONVERTER,
    )
    serve_metrics(settings.worker_metrics_port, settings.host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    threads = settings.worker_max_concurrent_activities * len(settings.worker_queues)
    with ThreadPoolExecutor(max_workers=threads) as executor:
        async with AsyncExitStack() as workers:
            for worker in build_workers(client, settings, executor):
                await workers.enter_async_context(worker)
            log.info("worker polling %s", ", ".join(settings.worker_queues))
            if "ingest" in settings.worker_queues:
                try:
                    await ensure_sweep_schedule(client, settings)
                except RPCError:
                    # The workers are what matters; the next start makes the schedule.
                    log.exception("could not create or update the sweeper's schedule")
            await stop.wait()


if __name__ == "__main__":
    settings = get_settings()
    configure_logging("worker", settings.log_level)
    configure_tracing(settings, "worker")
    asyncio.run(main(settings))

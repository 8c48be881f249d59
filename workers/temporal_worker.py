"""The Temporal worker process: runs IngestWorkflow and its activities."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client
from temporalio.worker import Worker

from activities.metadata import MetadataActivities
from activities.store import StoreActivities
from activities.verify import VerifyActivities
from conveyor_core.db.session import make_engine, make_session_factory
from conveyor_core.objectstore import make_s3_client
from conveyor_core.settings import Settings, get_settings
from observability.logging import configure_logging
from workflows.ingest import IngestWorkflow

MAX_CONCURRENT_ACTIVITIES = 16
log = logging.getLogger(__name__)


def build_worker(client: Client, settings: Settings, executor: ThreadPoolExecutor) -> Worker:
    s3 = make_s3_client(settings)
    sessions = make_session_factory(make_engine(settings, pool_size=MAX_CONCURRENT_ACTIVITIES))
    verify = VerifyActivities(s3)
    store = StoreActivities(s3)
    metadata = MetadataActivities(sessions)
    return Worker(
        client,
        task_queue=settings.ingest_task_queue,
        workflows=[IngestWorkflow],
        activities=[
            verify.verify_object,
            store.probe_object,
            store.delete_object,
            metadata.commit_ready,
            metadata.finalize_file,
        ],
        activity_executor=executor,
        max_concurrent_activities=MAX_CONCURRENT_ACTIVITIES,
    )


async def main(settings: Settings) -> None:
    client = await Client.connect(settings.temporal_target, namespace=settings.temporal_namespace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with ThreadPoolExecutor(max_workers=MAX_CONCURRENT_ACTIVITIES) as executor:
        worker = build_worker(client, settings, executor)
        async with worker:
            log.info("worker polling task queue %s", settings.ingest_task_queue)
            await stop.wait()


if __name__ == "__main__":
    settings = get_settings()
    configure_logging("worker", settings.log_level)
    asyncio.run(main(settings))

"""The floor under bench.orchestration: what Temporal and a Python worker cost, per workflow,
on this machine, for a workflow of the ingest's shape doing no work at all.

Against the running stack's Temporal server (`make up`), with a worker of its own in a child
process, it runs N workflows (`--in-flight` at a time) of the shape a small file's ingest has
today: started, signalled, one activity on its own task queue (dispatched eagerly), one local
activity, one activity on a second task queue, one more local activity, two search-attribute
upserts, done. Every activity returns at once. Prints the Temporal server's and the worker's
CPU ms per workflow (idle subtracted, as bench.orchestration does), beside a bare workflow
(started, signalled, done) measured in the same run.

    .venv/bin/python -m bench.orchestration_floor [--workflows 300] [--in-flight 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client

with workflow.unsafe.imports_passed_through():
    from bench.orchestration import cpu_ms_per_item, program_pids
    from conveyor_core.settings import get_settings
    from workflows import search_attributes

QUEUE = "floor-main"
OTHER_QUEUE = "floor-other"


@dataclass
class FloorInput:
    shape: str  # "ingest" or "bare"
    other_queue: str


@activity.defn
def nothing(value: str) -> str:
    return value


@workflow.defn
class FloorWorkflow:
    def __init__(self) -> None:
        self._signalled = False

    @workflow.signal
    def go(self) -> None:
        self._signalled = True

    @workflow.run
    async def run(self, inp: FloorInput) -> str:
        await workflow.wait_condition(lambda: self._signalled, timeout=timedelta(minutes=5))
        if inp.shape == "bare":
            return "done"
        options = {"start_to_close_timeout": timedelta(seconds=30)}
        workflow.upsert_search_attributes([search_attributes.STATUS.value_set("processing")])
        await workflow.execute_activity(nothing, "seal and verify", **options)  # type: ignore[arg-type]
        await workflow.execute_local_activity(nothing, "claim", **options)  # type: ignore[arg-type]
        await workflow.execute_activity(
            nothing,
            "scan",
            task_queue=inp.other_queue,
            **options,  # type: ignore[arg-type]
        )
        await workflow.execute_local_activity(nothing, "commit", **options)  # type: ignore[arg-type]
        workflow.upsert_search_attributes([search_attributes.STATUS.value_set("ready")])
        return "done"


async def serve() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from temporalio.worker import Worker

    settings = get_settings()
    client = await Client.connect(settings.temporal_target, namespace=settings.temporal_namespace)
    executor = ThreadPoolExecutor(16)
    async with (
        Worker(
            client,
            task_queue=QUEUE,
            workflows=[FloorWorkflow],
            activities=[nothing],
            activity_executor=executor,
        ),
        Worker(client, task_queue=OTHER_QUEUE, activities=[nothing], activity_executor=executor),
    ):
        print("ready", flush=True)
        await asyncio.Event().wait()


async def _batch(client: Client, shape: str, workflows: int, in_flight: int) -> None:
    slots = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with slots:
            handle = await client.start_workflow(
                FloorWorkflow.run,
                FloorInput(shape=shape, other_queue=OTHER_QUEUE),
                id=f"floor-{uuid.uuid4()}",
                task_queue=QUEUE,
            )
            await handle.signal(FloorWorkflow.go)
            assert await handle.result() == "done"

    await asyncio.gather(*(one() for _ in range(workflows)))


def _measure(
    client: Client, roots: dict[str, int], shape: str, workflows: int, in_flight: int
) -> dict[str, float]:
    loop = asyncio.get_event_loop()
    loop.run_until_complete(_batch(client, shape, 20, in_flight))  # warm
    _, wall, per = cpu_ms_per_item(
        roots,
        workflows,
        lambda: loop.run_until_complete(_batch(client, shape, workflows, in_flight)),
        idle_cap=20.0,
    )
    return {**per, "total": round(sum(per.values()), 1), "per_second": round(workflows / wall, 1)}


def run(workflows: int, in_flight: int) -> dict[str, object]:
    settings = get_settings()
    worker = subprocess.Popen(
        [sys.executable, "-m", "bench.orchestration_floor", "--serve"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        roots = {"temporal": program_pids(settings)["temporal"], "worker": worker.pid}
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        client = loop.run_until_complete(
            Client.connect(settings.temporal_target, namespace=settings.temporal_namespace)
        )
        return {
            "workflows": workflows,
            "in_flight": in_flight,
            "cpu_ms_per_workflow": {
                "ingest_shape": _measure(client, roots, "ingest", workflows, in_flight),
                "bare": _measure(client, roots, "bare", workflows, in_flight),
            },
        }
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflows", type=int, default=300)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return
    print(json.dumps(run(args.workflows, args.in_flight), indent=2))


if __name__ == "__main__":
    main()

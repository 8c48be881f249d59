"""Small test helpers shared by the suites."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from temporalio.worker import Replayer

from conveyor_core.payloads import DATA_CONVERTER
from workers.temporal_worker import WORKFLOW_RUNNER
from workflows.ingest import IngestWorkflow

T = TypeVar("T")


async def assert_eventually(
    fn: Callable[[], Awaitable[T]], *, timeout: float = 30.0, interval: float = 0.1
) -> T:
    """Calls `fn` until it stops raising AssertionError; re-raises the last one at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await fn()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval)


def process_alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it runs no more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def ingest_replayer() -> Replayer:
    """Replays IngestWorkflow histories as the worker runs the workflow: its data converter
    and its sandbox."""
    return Replayer(
        workflows=[IngestWorkflow], data_converter=DATA_CONVERTER, workflow_runner=WORKFLOW_RUNNER
    )

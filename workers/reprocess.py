"""`conveyor reprocess`: start a ReprocessWorkflow and follow its progress query.

The command only starts and watches: the batch itself is the workflow, which keeps going
when the command is interrupted and is followed again with `--status WORKFLOW_ID`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.reprocess import parse_instant
from conveyor_core.settings import Settings
from conveyor_core.stage_registry import stage_specs
from conveyor_core.types import (
    ReprocessFilter,
    ReprocessInput,
    ReprocessProgress,
)
from workflows.reprocess import ReprocessWorkflow, reprocess_workflow_id

WHERE_KEYS = ("content_type", "tenant", "created_after", "created_before")
POLL_SECONDS = 0.5
TRANSIENT = (
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.FAILED_PRECONDITION,
)


class UsageError(Exception):
    """Bad command-line input; the message says what to write instead."""


class NotFound(Exception):
    pass


class BatchEnded(Exception):
    """The workflow closed without a result (failed, terminated, cancelled, timed out)."""


def parse_where(items: Sequence[str]) -> ReprocessFilter:
    """`KEY=VALUE` items (each key once) as a filter; never SQL.

    `content_type=image/png` matches exactly, `content_type=image/*` (or `image/%`) by
    prefix; `tenant=NAME`; `created_after=` / `created_before=` an ISO 8601 date or date-time
    (UTC unless it carries an offset).
    """
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or key not in WHERE_KEYS or not value:
            raise UsageError(f"--where {item!r}: expected KEY=VALUE, KEY one of {WHERE_KEYS}")
        if key in values:
            raise UsageError(f"--where {key} is given twice")
        if key == "content_type":
            if value.endswith("%"):
                value = value[:-1] + "*"
            if "*" in value[:-1] or "%" in value[:-1]:
                raise UsageError("--where content_type: only a trailing * (a prefix) is allowed")
        if key.startswith("created_"):
            try:
                value = parse_instant(value).isoformat()
            except ValueError as e:
                raise UsageError(f"--where {key}: {e}") from e
        values[key] = value
    return ReprocessFilter(**values)


def batch_input(
    settings: Settings,
    stage: str,
    filter: ReprocessFilter,
    *,
    concurrency: int,
    page_size: int,
    pages_per_run: int,
) -> ReprocessInput:
    names = [s.name for s in stage_specs(settings)]
    if stage not in names:
        raise UsageError(f"--stage must be one of {', '.join(names)}, not {stage!r}")
    return ReprocessInput(
        stage=stage,
        filter=filter,
        max_concurrency=concurrency,
        page_size=page_size,
        pages_per_run=pages_per_run,
        thumbnail_sizes=list(settings.thumbnail_sizes),
        media_task_queue=settings.media_task_queue,
    )


def new_workflow_id(stage: str, given: str | None) -> str:
    return reprocess_workflow_id(stage, given or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))


async def connect(settings: Settings) -> Client:
    return await Client.connect(settings.temporal_target, namespace=settings.temporal_namespace)


async def start(
    client: Client, settings: Settings, inp: ReprocessInput, workflow_id: str
) -> WorkflowHandle[Any, ReprocessProgress]:
    """Starts the batch; a finished one's id may be used again, a running one's not."""
    return await client.start_workflow(
        ReprocessWorkflow.run,
        inp,
        id=workflow_id,
        task_queue=settings.ingest_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )


async def snapshot(client: Client, workflow_id: str) -> tuple[ReprocessProgress, bool]:
    """The batch's counters now, and whether it has finished.

    Raises NotFound for an unknown id and BatchEnded when it closed without finishing.
    """
    handle = client.get_workflow_handle_for(ReprocessWorkflow.run, workflow_id)
    try:
        described = await handle.describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"no workflow {workflow_id}") from e
        raise
    if described.status == WorkflowExecutionStatus.COMPLETED:
        return await handle.result(), True
    if described.status != WorkflowExecutionStatus.RUNNING:
        name = described.status.name.lower() if described.status else "closed"
        raise BatchEnded(f"workflow {workflow_id} is {name}")
    return await handle.query(ReprocessWorkflow.progress), False


async def follow(
    client: Client, workflow_id: str, on_progress: Callable[[ReprocessProgress], None]
) -> ReprocessProgress:
    """Polls the progress query until the batch finishes; returns its final counters."""
    while True:
        try:
            progress, finished = await snapshot(client, workflow_id)
        except RPCError as e:
            # Continue-as-new swaps runs under the same id, and the server may be restarting:
            # one look may miss, the next not.
            if e.status not in TRANSIENT:
                raise
        else:
            on_progress(progress)
            if finished:
                return progress
        await asyncio.sleep(POLL_SECONDS)


def as_json_counters(workflow_id: str, progress: ReprocessProgress) -> dict[str, Any]:
    return {"workflow_id": workflow_id, **dataclasses.asdict(progress)}


async def command(
    settings: Settings,
    workflow_id: str,
    inp: ReprocessInput | None,
    *,
    watch: bool,
    as_json: bool,
) -> int:
    """`conveyor reprocess`: starts the batch when `inp` is given, then shows its progress
    (a bar until it ends when `watch`, else the counters now). Returns the exit code."""
    out = Console(highlight=False, markup=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
    try:
        client = await connect(settings)
    except RuntimeError as e:
        err.print(f"Temporal at {settings.temporal_target} is not reachable: {e}")
        return 5
    try:
        if inp is not None:
            try:
                await start(client, settings, inp, workflow_id)
            except WorkflowAlreadyStartedError as e:
                raise UsageError(
                    f"{workflow_id} is already running; follow it with --status {workflow_id}"
                ) from e
            err.print(f"Started {workflow_id}")
            if not watch:
                out.print(json.dumps({"workflow_id": workflow_id}) if as_json else workflow_id)
                return 0
        if watch:
            progress, finished = await _follow_with_bar(client, workflow_id, err, as_json), True
        else:
            progress, finished = await snapshot(client, workflow_id)
    except NotFound as e:
        err.print(f"Not found: {e}")
        return 4
    except BatchEnded as e:
        err.print(f"The batch did not finish: {e}")
        return 1
    except RPCError as e:
        err.print(f"Temporal at {settings.temporal_target} answered: {e}")
        return 5
    if as_json:
        out.print(json.dumps(as_json_counters(workflow_id, progress), indent=2))
    else:
        out.print(
            f"{workflow_id} {'finished' if finished else 'running'}: {progress.done} done, "
            f"{progress.failed} failed, {progress.skipped} skipped, "
            f"{progress.quarantined} quarantined of {progress.seen} seen "
            f"({progress.total} matched at the start; {progress.runs} runs)"
        )
        for failure in progress.failures:
            out.print(f"  failed {failure.sha256}: {failure.reason}")
    return 1 if progress.failed else 0


async def _follow_with_bar(
    client: Client, workflow_id: str, console: Console, quiet: bool
) -> ReprocessProgress:
    bar = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("done {task.fields[done]}  failed {task.fields[failed]}", markup=False),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )
    with bar:
        task = bar.add_task(workflow_id, total=None, done=0, failed=0)

        def show(p: ReprocessProgress) -> None:
            # Done, failed and skipped blobs are all behind us; blobs added since the start
            # make `seen` outgrow the first count.
            total = max(p.total or 0, p.seen) or None
            ended = p.done + p.failed + p.skipped
            bar.update(task, completed=ended, total=total, done=p.done, failed=p.failed)

        return await follow(client, workflow_id, show)

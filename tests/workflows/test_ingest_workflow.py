"""IngestWorkflow's own logic against a real Temporal dev server, with stub activities."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest_asyncio
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from conveyor_core.types import (
    CommitReadyInput,
    FileStatus,
    FinalizeInput,
    IngestInput,
    ObjectProbe,
    ObjectRef,
    ObjectUploaded,
    StageStatus,
    VerifyInput,
    VerifyResult,
)
from tests.helpers import assert_eventually
from workflows.ingest import IngestWorkflow

TEMPORAL_BIN = Path(sys.executable).parent / "temporal"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    binary = str(TEMPORAL_BIN) if TEMPORAL_BIN.exists() else shutil.which("temporal")
    assert binary, "temporal CLI not installed (bootstrap installs temporal-bin)"
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary, dev_server_extra_args=["--log-level", "error"]
    ) as env:
        yield env


@dataclass
class Stubs:
    """Activities with the real names, recording what the workflow asked for."""

    object_exists: bool = False
    verify_result: VerifyResult = field(
        default_factory=lambda: VerifyResult(
            ok=True, detail=None, sha256="a" * 64, size=3, content_type="text/plain"
        )
    )
    calls: Counter[str] = field(default_factory=Counter)
    committed: list[CommitReadyInput] = field(default_factory=list)
    finalized: list[FinalizeInput] = field(default_factory=list)

    def activities(self) -> list[object]:
        @activity.defn(name="probe_object")
        def probe_object(ref: ObjectRef) -> ObjectProbe:
            self.calls["probe_object"] += 1
            return ObjectProbe(exists=self.object_exists, size=3 if self.object_exists else None)

        @activity.defn(name="delete_object")
        def delete_object(ref: ObjectRef) -> None:
            self.calls["delete_object"] += 1

        @activity.defn(name="verify_object")
        def verify_object(inp: VerifyInput) -> VerifyResult:
            self.calls["verify_object"] += 1
            return self.verify_result

        @activity.defn(name="commit_ready")
        def commit_ready(inp: CommitReadyInput) -> None:
            self.calls["commit_ready"] += 1
            self.committed.append(inp)

        @activity.defn(name="finalize_file")
        def finalize_file(inp: FinalizeInput) -> None:
            self.calls["finalize_file"] += 1
            self.finalized.append(inp)

        return [probe_object, delete_object, verify_object, commit_ready, finalize_file]


def _input(*, expire: int = 3600, reconcile: int = 3600) -> IngestInput:
    file_id = str(uuid.uuid4())
    return IngestInput(
        file_id=file_id,
        tenant_id="t",
        upload_id="u",
        bucket="b",
        object_key=f"incoming/t/{file_id}",
        declared_size=3,
        declared_content_type="text/plain",
        declared_sha256=None,
        expire_after_seconds=expire,
        reconcile_after_seconds=reconcile,
    )


async def _start(
    client: Client, stubs: Stubs, inp: IngestInput
) -> tuple[Worker, WorkflowHandle[IngestWorkflow, object]]:
    from concurrent.futures import ThreadPoolExecutor

    queue = f"test-{uuid.uuid4()}"
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[IngestWorkflow],
        activities=stubs.activities(),
        activity_executor=ThreadPoolExecutor(4),
    )
    handle = await client.start_workflow(
        IngestWorkflow.run, inp, id=f"ingest-{inp.file_id}", task_queue=queue
    )
    return worker, handle  # type: ignore[return-value]


async def test_ingest_duplicate_signal_is_processed_once(env: WorkflowEnvironment) -> None:
    stubs = Stubs()
    inp = _input()
    worker, handle = await _start(env.client, stubs, inp)
    async with worker:
        event = ObjectUploaded(bucket=inp.bucket, key=inp.object_key, size=3)
        await handle.signal(IngestWorkflow.object_uploaded, event)
        await handle.signal(IngestWorkflow.object_uploaded, event)
        result = await handle.result()
    assert result.status == FileStatus.READY
    assert stubs.calls["verify_object"] == 1 and stubs.calls["commit_ready"] == 1
    assert stubs.committed[0].stages["verify"].status == StageStatus.SUCCEEDED
    assert stubs.calls["probe_object"] == 0


async def test_ingest_reconciles_when_no_event_comes(env: WorkflowEnvironment) -> None:
    stubs = Stubs(object_exists=True)
    worker, handle = await _start(env.client, stubs, _input(reconcile=1))
    async with worker:
        result = await handle.result()
    assert result.status == FileStatus.READY
    assert stubs.calls["probe_object"] >= 1 and stubs.calls["verify_object"] == 1


async def test_ingest_expires_and_cleans_up(env: WorkflowEnvironment) -> None:
    stubs = Stubs(object_exists=False)
    worker, handle = await _start(env.client, stubs, _input(expire=2, reconcile=1))
    async with worker:
        result = await handle.result()
    assert result.status == FileStatus.EXPIRED
    assert stubs.calls["delete_object"] == 1 and stubs.calls["verify_object"] == 0
    assert stubs.finalized[0].status == FileStatus.EXPIRED
    assert stubs.finalized[0].stages["verify"].status == StageStatus.SKIPPED


async def test_ingest_cancel_ends_cancelled(env: WorkflowEnvironment) -> None:
    stubs = Stubs()
    worker, handle = await _start(env.client, stubs, _input())
    async with worker:

        async def waiting() -> None:
            assert (await handle.query(IngestWorkflow.status)).status == FileStatus.AWAITING_UPLOAD

        await assert_eventually(waiting)
        await handle.signal(IngestWorkflow.cancel)
        result = await handle.result()
    assert result.status == FileStatus.CANCELLED
    assert stubs.finalized[0].status == FileStatus.CANCELLED and stubs.calls["delete_object"] == 1


async def test_ingest_verify_mismatch_fails_with_reason(env: WorkflowEnvironment) -> None:
    stubs = Stubs(
        verify_result=VerifyResult(
            ok=False, detail="size mismatch: declared 3 bytes, the object has 4"
        )
    )
    inp = _input()
    worker, handle = await _start(env.client, stubs, inp)
    async with worker:
        await handle.signal(
            IngestWorkflow.object_uploaded, ObjectUploaded(bucket="b", key=inp.object_key)
        )
        result = await handle.result()
        progress = await handle.query(IngestWorkflow.status)
    assert result.status == FileStatus.FAILED
    assert result.detail == "verify: size mismatch: declared 3 bytes, the object has 4"
    assert stubs.calls["commit_ready"] == 0 and stubs.calls["delete_object"] == 1
    assert progress.stages["verify"].status == StageStatus.FAILED
    assert (
        stubs.finalized[0].stages["verify"].detail
        == "size mismatch: declared 3 bytes, the object has 4"
    )

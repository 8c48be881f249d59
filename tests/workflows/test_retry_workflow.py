"""IngestWorkflow's retry run (POST /v1/files/{id}/retry) against a real Temporal dev server,
with stub activities."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from conveyor_core.types import (
    RETRY_ABANDONED_ERROR,
    BlobRole,
    BlobState,
    BlobStatus,
    ClaimResult,
    FileStatus,
    IngestResult,
    RetryClaimInput,
    RetryRequest,
    StageState,
    StageStatus,
    Thumbnail,
)
from tests.helpers import ingest_replayer
from tests.workflows.test_ingest_workflow import SHA, Stubs, _blob, _input
from tests.workflows.test_ingest_workflow import env as env  # the module's own dev server
from workers.temporal_worker import WORKFLOW_RUNNER
from workflows.ingest import IngestWorkflow

VERIFIED = StageState(StageStatus.SUCCEEDED, "image/png", 5)
PENDING = StageState(StageStatus.PENDING)


@dataclass
class RetryStubs(Stubs):
    retry_claim: Callable[[RetryClaimInput], ClaimResult] | None = None
    retry_claims: list[RetryClaimInput] = field(default_factory=list)

    def activities(self) -> list[Any]:
        @activity.defn(name="claim_retry")
        def claim_retry(inp: RetryClaimInput) -> ClaimResult:
            self.calls["claim_retry"] += 1
            self.retry_claims.append(inp)
            assert self.retry_claim is not None
            return self.retry_claim(inp)

        return [*super().activities(), claim_retry]


def _failed_file_stages() -> dict[str, StageState]:
    return {"verify": VERIFIED, "scan": PENDING, "thumbnails": PENDING, "ocr": PENDING}


async def _retry(
    env: WorkflowEnvironment, stubs: RetryStubs, retry: RetryRequest, **changes: Any
) -> tuple[IngestResult, WorkflowHandle[Any, Any]]:
    queue = f"test-{uuid.uuid4()}"
    inp = _input(queue, retry=retry, **changes)
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[IngestWorkflow],
        workflow_runner=WORKFLOW_RUNNER,
        activities=stubs.activities(),
        activity_executor=ThreadPoolExecutor(8),
    ):
        handle = await env.client.start_workflow(
            IngestWorkflow.run,
            inp,
            id=f"ingest-{inp.file_id}",
            task_queue=queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
        return await handle.result(), handle


async def test_retry_failed_file_owns_its_blob_again_and_runs_every_stage(
    env: WorkflowEnvironment,
) -> None:
    stubs = RetryStubs(
        retry_claim=lambda inp: ClaimResult(
            BlobRole.OWNER, BlobState(_blob(), BlobStatus.PROCESSING)
        )
    )
    retry = RetryRequest(
        _blob(), FileStatus.FAILED, ["scan", "thumbnails", "ocr"], _failed_file_stages()
    )

    result, handle = await _retry(env, stubs, retry, event_seq_offset=7)

    assert result.status == FileStatus.READY
    for name in ("claim_retry", "scan_blob", "make_thumbnails", "ocr_blob", "commit_file"):
        assert stubs.calls[name] == 1, name
    for name in ("probe_object", "verify_object", "claim_blob", "delete_object"):
        assert stubs.calls[name] == 0, name
    assert stubs.retry_claims[0] == RetryClaimInput(
        stubs.commits[0].file_id, SHA, FileStatus.FAILED, ["scan", "thumbnails", "ocr"]
    )
    commit = stubs.commits[0]
    assert commit.status == FileStatus.READY and commit.blob_status == BlobStatus.READY
    assert commit.retried_stages == []  # a whole processing: committed as for a fresh file
    assert commit.stages["verify"] == VERIFIED  # kept from the first run
    assert commit.stages["scan"].status == StageStatus.SUCCEEDED
    assert commit.thumbnails[0].size == 256
    # Its events go on after the ones kept from the first run, with what changed only.
    events = [(e.seq, e.kind, e.stage, e.status) for e in commit.events]
    assert events[0] == (8, "status", None, "processing")
    assert events[-1] == (7 + len(events), "status", None, "ready")
    assert [e.seq for e in commit.events] == list(range(8, 8 + len(events)))
    assert ("stage", "scan", "succeeded") in [e[1:] for e in events]
    assert all(e[2] != "verify" for e in events)
    # The history of a retry run replays.
    replayed = await ingest_replayer().replay_workflow(await handle.fetch_history())
    assert replayed.replay_failure is None


async def test_retry_failed_file_reuses_the_outcome_of_the_blobs_new_owner(
    env: WorkflowEnvironment,
) -> None:
    stages = {
        "scan": StageState(StageStatus.SUCCEEDED, "clean", 3),
        "thumbnails": StageState(StageStatus.SUCCEEDED, "2 sizes", 40),
        "ocr": StageState(StageStatus.SKIPPED, "no OCR for image/png"),
    }
    canonical = _blob("incoming/other/upload")
    stubs = RetryStubs(
        retry_claim=lambda inp: ClaimResult(
            BlobRole.DUPLICATE, BlobState(canonical, BlobStatus.PROCESSING)
        ),
        awaited_states=[BlobState(canonical, BlobStatus.READY, stages)],
    )
    retry = RetryRequest(
        _blob(), FileStatus.FAILED, ["scan", "thumbnails", "ocr"], _failed_file_stages()
    )

    result, _ = await _retry(env, stubs, retry)

    assert result.status == FileStatus.READY
    assert stubs.calls["await_blob"] == 1 and stubs.calls["scan_blob"] == 0
    commit = stubs.commits[0]
    assert commit.blob_status is None and commit.stages["thumbnails"] == stages["thumbnails"]


async def test_retry_ready_file_reruns_only_its_failed_stage_and_stays_ready(
    env: WorkflowEnvironment,
) -> None:
    kept = [Thumbnail(64, 64, 32, "b", f"derivatives/{SHA}/thumb-64.webp", "image/webp")]
    ready = BlobState(
        _blob(),
        BlobStatus.READY,
        {"scan": StageState(StageStatus.SUCCEEDED, "clean")},
        thumbnails=kept,
    )
    file_stages = {
        "verify": VERIFIED,
        "scan": StageState(StageStatus.SUCCEEDED, "clean", 4),
        "thumbnails": PENDING,
        "ocr": StageState(StageStatus.SKIPPED, "no OCR for image/png"),
    }
    stubs = RetryStubs(retry_claim=lambda inp: ClaimResult(BlobRole.OWNER, ready))
    retry = RetryRequest(_blob(), FileStatus.READY, ["thumbnails"], file_stages)

    result, _ = await _retry(env, stubs, retry)

    assert result.status == FileStatus.READY
    assert stubs.calls["make_thumbnails"] == 1
    for name in ("scan_blob", "ocr_blob", "publish_blob", "quarantine_object"):
        assert stubs.calls[name] == 0, name
    commit = stubs.commits[0]
    assert commit.retried_stages == ["thumbnails"]
    assert commit.blob_status is None  # the blob stays ready: only the stage is recorded
    assert commit.stages["thumbnails"].status == StageStatus.SUCCEEDED
    assert commit.stages["scan"] == file_stages["scan"] and commit.stages["ocr"].detail
    assert [t.size for t in commit.thumbnails] == [256]
    # Only the re-run stage is news, and the events end with the file's status again.
    assert [(e.kind, e.stage, e.status) for e in commit.events] == [
        ("stage", "thumbnails", "running"),
        ("stage", "thumbnails", "succeeded"),
        ("status", None, "ready"),
    ]


async def test_retry_ready_file_whose_stage_fails_again_keeps_its_thumbnails(
    env: WorkflowEnvironment,
) -> None:
    def broken() -> Any:
        raise ApplicationError("store unreachable", non_retryable=True)

    kept = [Thumbnail(64, 64, 32, "b", f"derivatives/{SHA}/thumb-64.webp", "image/webp")]
    ready = BlobState(_blob(), BlobStatus.READY, thumbnails=kept)
    stubs = RetryStubs(
        thumbnails=broken,
        retry_claim=lambda inp: ClaimResult(BlobRole.OWNER, ready),
    )
    retry = RetryRequest(_blob(), FileStatus.READY, ["thumbnails"], {"thumbnails": PENDING})

    result, _ = await _retry(env, stubs, retry)

    assert result.status == FileStatus.READY
    commit = stubs.commits[0]
    assert commit.stages["thumbnails"] == StageState(
        StageStatus.FAILED, "store unreachable", commit.stages["thumbnails"].duration_ms
    )
    assert commit.thumbnails == kept


async def test_retry_the_api_rolled_back_leaves_the_file_alone(env: WorkflowEnvironment) -> None:
    def abandoned(inp: RetryClaimInput) -> ClaimResult:
        raise ApplicationError(
            "the retry was not committed", type=RETRY_ABANDONED_ERROR, non_retryable=True
        )

    stubs = RetryStubs(retry_claim=abandoned)
    retry = RetryRequest(_blob(), FileStatus.FAILED, ["scan", "thumbnails", "ocr"])

    result, _ = await _retry(env, stubs, retry)

    assert result == IngestResult(FileStatus.FAILED, "the retry was not committed")
    assert stubs.calls["commit_file"] == 0 and stubs.calls["scan_blob"] == 0

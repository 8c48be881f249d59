"""Batches of stages: which stages a plan batches, what a batch answers for each stage, and
the one download a batch's stages share."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

from activities.builtin_stages import OCR, SCAN, TEXT, THUMBNAILS
from activities.downloads import download_blob, shared_downloads
from activities.stage_batch import NOT_ON_QUEUE_ERROR, StageBatch, batch_runs
from conveyor_core.settings import Settings
from conveyor_core.stages import (
    BatchedStage,
    StageBatchInput,
    StageInput,
    StageOutput,
    StageSpec,
    plan_for,
)
from conveyor_core.types import INVALID_IMAGE_ERROR, BlobRef

SPECS = [SCAN.spec, THUMBNAILS.spec, TEXT.spec, OCR.spec]
MiB = 1024**2
BLOB = BlobRef(bucket="b", key="blobs/x", sha256="a" * 64, size=10, content_type="image/png")


def _batches(content_type: str, size: int | None, settings: Settings | None = None) -> dict:
    plan = plan_for(SPECS, content_type, settings or Settings(), None, size)
    return {s.name: s.batch for s in plan.stages}


def test_a_small_files_media_stages_that_apply_share_a_batch_and_the_scan_never_does() -> None:
    assert _batches("application/pdf", 2 * MiB) == {
        "scan": None,
        "thumbnails": "media",
        "text": "media",
        "ocr": "media",
    }
    # A PNG has no text stage (skipped by the plan): thumbnails and OCR.
    assert _batches("image/png", 10) == {
        "scan": None,
        "thumbnails": "media",
        "text": None,
        "ocr": "media",
    }


def test_a_lone_stage_a_large_file_or_a_plan_without_a_size_is_not_batched() -> None:
    # A text file has one media stage (text): nothing to batch it with.
    assert set(_batches("text/plain", 10).values()) == {None}
    assert set(_batches("application/pdf", 16 * MiB + 1).values()) == {None}
    assert set(_batches("application/pdf", None).values()) == {None}  # a reprocess's plan
    never = Settings(stage_batch_max_bytes=0)
    assert set(_batches("application/pdf", 10, never).values()) == {None}


def test_only_stages_that_say_so_and_share_a_queue_are_batched() -> None:
    own_queue = replace(OCR.spec, task_queue="ocr-gpu")
    not_batchable = replace(TEXT.spec, batchable=False)
    plan = plan_for(
        [SCAN.spec, THUMBNAILS.spec, not_batchable, own_queue],
        "application/pdf",
        Settings(),
        None,
        10,
    )
    assert {s.name: s.batch for s in plan.stages} == {
        "scan": None,
        "thumbnails": None,
        "text": None,
        "ocr": None,
    }
    third_party = StageSpec(name="faces", activity="stage_faces", content_types=("image/*",))
    assert third_party.batchable is False


def _batch(*stages: BatchedStage, runs: dict[str, Any]) -> Any:
    inp = StageBatchInput(blob=BLOB, stages=list(stages), options={"k": 1})
    return ActivityEnvironment().run(StageBatch(runs).run, inp)


def test_a_batch_answers_each_stages_own_outcome_in_order() -> None:
    seen: list[str] = []

    def good(inp: StageInput) -> StageOutput:
        seen.append(inp.stage)
        assert inp.blob == BLOB and inp.options == {"k": 1}
        return StageOutput(detail=f"{inp.stage} done")

    def invalid(inp: StageInput) -> StageOutput:
        seen.append(inp.stage)
        raise ApplicationError("not an image", type=INVALID_IMAGE_ERROR, non_retryable=True)

    def flaky(inp: StageInput) -> StageOutput:
        seen.append(inp.stage)
        raise ConnectionResetError("the store reset the connection")

    def listed(inp: StageInput) -> StageOutput:
        seen.append(inp.stage)
        raise ApplicationError("bad page", type="BadPage")  # retryable, but the stage says not

    out = _batch(
        BatchedStage("a", "good"),
        BatchedStage("b", "invalid"),
        BatchedStage("c", "flaky"),
        BatchedStage("d", "listed", non_retryable_errors=["BadPage"]),
        runs={"good": good, "invalid": invalid, "flaky": flaky, "listed": listed},
    )
    assert seen == ["a", "b", "c", "d"]  # one stage's error does not stop the others
    a, b, c, d = (out.results[n] for n in "abcd")
    assert a.output == StageOutput(detail="a done") and a.error is None
    assert (b.output, b.error, b.error_type, b.retryable) == (
        None,
        "not an image",
        INVALID_IMAGE_ERROR,
        False,
    )
    assert (c.error, c.error_type, c.retryable) == (
        "the store reset the connection",
        "ConnectionResetError",
        True,
    )
    assert (d.error_type, d.retryable) == ("BadPage", False)


def test_a_cancelled_batch_stops_and_a_stage_it_cannot_run_fails_it_whole() -> None:
    def cancelled(inp: StageInput) -> StageOutput:
        raise CancelledError("the scan did not pass")

    later: list[str] = []
    with pytest.raises(CancelledError):
        _batch(
            BatchedStage("a", "cancelled"),
            BatchedStage("b", "later"),
            runs={"cancelled": cancelled, "later": lambda inp: later.append(inp.stage)},
        )
    assert later == []
    with pytest.raises(ApplicationError) as raised:
        _batch(BatchedStage("a", "elsewhere"), runs={})
    assert raised.value.type == NOT_ON_QUEUE_ERROR and raised.value.non_retryable


def test_a_batch_runs_only_synchronous_activities_by_their_registered_names() -> None:
    @activity.defn(name="stage_sync")
    def sync(inp: StageInput) -> StageOutput:
        return StageOutput()

    @activity.defn(name="stage_async")
    async def not_sync(inp: StageInput) -> StageOutput:
        return StageOutput()

    def plain(inp: StageInput) -> StageOutput:
        return StageOutput()

    assert batch_runs([sync, not_sync, plain]) == {"stage_sync": sync}


class CountingStore:
    """An S3 client's get_object, counting the fetches (pure logic: no store involved)."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.gets = 0

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self.gets += 1
        return {"Body": _Body(self.content)}


class _Body(io.BytesIO):
    def iter_chunks(self, size: int) -> Any:
        return iter(lambda: self.read(size), b"")


def test_a_batch_fetches_a_blob_once_and_each_stage_gets_a_copy_of_its_own(
    tmp_path: Path,
) -> None:
    store = CountingStore(b"x" * 3_000_000)
    with shared_downloads():
        first, second = tmp_path / "first", tmp_path / "second"
        download_blob(store, BLOB, first, lambda: None)
        first.write_bytes(b"changed by the first stage")
        download_blob(store, BLOB, second, lambda: None)
    assert store.gets == 1
    assert second.read_bytes() == b"x" * 3_000_000
    # Outside a batch, every download fetches.
    download_blob(store, BLOB, tmp_path / "third", lambda: None)
    download_blob(store, BLOB, tmp_path / "fourth", lambda: None)
    assert store.gets == 3


def test_a_fetch_that_broke_off_is_not_handed_to_the_next_stage(tmp_path: Path) -> None:
    class BreaksOnce(CountingStore):
        def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
            response = super().get_object(Bucket, Key)
            if self.gets == 1:  # the first fetch stops after its first chunk
                chunks = response["Body"].iter_chunks(1024 * 1024)
                response["Body"].iter_chunks = lambda size: _broken(chunks)
            return response

    def _broken(chunks: Any) -> Any:
        yield next(chunks)
        raise ConnectionResetError("reset")

    store = BreaksOnce(b"y" * 3_000_000)
    with shared_downloads():
        with pytest.raises(ConnectionResetError):
            download_blob(store, BLOB, tmp_path / "first", lambda: None)
        download_blob(store, BLOB, tmp_path / "second", lambda: None)
    assert (tmp_path / "second").read_bytes() == b"y" * 3_000_000 and store.gets == 2

"""The worker's and API's data converter decodes exactly as Temporal's default does."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from temporalio.converter import DataConverter

from conveyor_core.payloads import DATA_CONVERTER
from conveyor_core.settings import Settings
from conveyor_core.stage_registry import stage_specs
from conveyor_core.stages import StageOutput, StagePlan, plan_for
from conveyor_core.types import (
    BlobStatus,
    CommitInput,
    FileStatus,
    IngestProgress,
    ProgressEvent,
    StageState,
    StageStatus,
    Thumbnail,
)

DEFAULT = DataConverter.default.payload_converter
CONVEYOR = DATA_CONVERTER.payload_converter


@dataclass
class Counted:
    name: str
    seen: int = field(default=0, init=False)  # not the constructor's: Temporal decodes it


def _round_trip(value: object, hint: type) -> tuple[object, object]:
    payloads = DEFAULT.to_payloads([value])
    assert CONVEYOR.to_payloads([value]) == payloads  # the same JSON on the wire
    return CONVEYOR.from_payloads(payloads, [hint])[0], DEFAULT.from_payloads(payloads, [hint])[0]


def test_a_plan_decodes_as_temporal_decodes_it() -> None:
    settings = Settings()
    plan = plan_for(stage_specs(settings), "image/jpeg", settings, None)
    ours, temporals = _round_trip(plan, StagePlan)
    assert ours == temporals == plan
    assert isinstance(ours, StagePlan) and type(ours.stages[0]) is type(plan.stages[0])


def test_nested_enums_optionals_and_dicts_of_dataclasses_decode_to_their_types() -> None:
    commit = CommitInput(
        file_id="f",
        status=FileStatus.READY,
        detail=None,
        stages={"scan": StageState(StageStatus.SUCCEEDED, "clean", 12)},
        blob_sha256="ab" * 32,
        blob_status=BlobStatus.READY,
        thumbnails=[Thumbnail(256, 256, 192, "b", "derivatives/x/thumb-256.webp", "image/webp")],
        events=[ProgressEvent(1, "stage", "running", "2026-12-04T12:00:00+00:00", stage="scan")],
        metadata={"width": 1024, "gps": {"lat": 1.5}},
    )
    ours, temporals = _round_trip(commit, CommitInput)
    assert ours == temporals == commit
    assert isinstance(ours, CommitInput)
    assert ours.status is FileStatus.READY and ours.blob_status is BlobStatus.READY
    assert isinstance(ours.stages["scan"], StageState)
    assert ours.stages["scan"].status is StageStatus.SUCCEEDED
    assert isinstance(ours.thumbnails[0], Thumbnail)


def test_unknown_keys_are_ignored_and_missing_defaults_filled() -> None:
    # A history written by older or newer code: fields come and go.
    payloads = DEFAULT.to_payloads([{"file_id": "f", "status": "processing", "gone": 1}])
    ours = CONVEYOR.from_payloads(payloads, [IngestProgress])[0]
    assert ours == IngestProgress(file_id="f", status=FileStatus.PROCESSING)
    output = CONVEYOR.from_payloads(DEFAULT.to_payloads([{"detail": "x"}]), [StageOutput])[0]
    assert output == StageOutput(detail="x")


def test_a_missing_required_field_fails_as_it_does_for_temporal() -> None:
    payloads = DEFAULT.to_payloads([{"status": "ready"}])
    with pytest.raises(Exception) as ours:
        CONVEYOR.from_payloads(payloads, [IngestProgress])
    with pytest.raises(Exception) as temporals:
        DEFAULT.from_payloads(payloads, [IngestProgress])
    assert "file_id" in str(ours.value.__cause__ or ours.value)
    assert type(ours.value) is type(temporals.value)


def test_a_field_outside_the_constructor_is_set_after_it_as_temporal_does() -> None:
    counted = Counted("x")
    counted.seen = 3
    ours, temporals = _round_trip(counted, Counted)
    assert isinstance(ours, Counted) and isinstance(temporals, Counted)
    assert (ours.name, ours.seen) == (temporals.name, temporals.seen) == ("x", 3)

"""A small file's batchable stages of one task queue, run one after the other in one
activity (`stage_batch`): the orchestration's cost per activity is about a small file's
work, and the bytes are fetched from the store once.

Each stage is the very function its own activity runs, given the StageInput it would get.
Its outcome is its own: one stage's error ends only that stage, and says whether it may
succeed when run again; the workflow then runs it on its own, with its retry policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities.downloads import shared_downloads
from conveyor_core.stages import (
    BatchedStage,
    BatchedStageResult,
    StageBatchInput,
    StageBatchOutput,
    StageInput,
    StageOutput,
)
from observability.metrics import observe_activity

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

StageRun = Callable[[StageInput], StageOutput]
NOT_ON_QUEUE_ERROR = "StageNotOnQueue"


def batch_runs(functions: Sequence[Callable[..., Any]]) -> dict[str, StageRun]:
    """The synchronous activities among `functions`, by name: what a batch may run."""
    runs: dict[str, StageRun] = {}
    for fn in functions:
        # The name it is registered by: the SDK keeps no public accessor for it.
        definition = activity._Definition.from_callable(fn)
        if definition is not None and definition.name and not definition.is_async:
            runs[definition.name] = fn
    return runs


class StageBatch:
    def __init__(self, runs: Mapping[str, StageRun]) -> None:
        self._runs = dict(runs)

    @activity.defn(name="stage_batch")
    def run(self, inp: StageBatchInput) -> StageBatchOutput:
        missing = [s.activity for s in inp.stages if s.activity not in self._runs]
        if missing:
            # A worker of this queue without the stage (an older deployment): each stage
            # then runs as its own activity, which waits for a worker that has it.
            raise ApplicationError(
                f"stage activities {missing} are not batched on this queue",
                type=NOT_ON_QUEUE_ERROR,
                non_retryable=True,
            )
        results: dict[str, BatchedStageResult] = {}
        with shared_downloads():
            for stage in inp.stages:
                results[stage.name] = self._run_one(stage, inp)
        return StageBatchOutput(results=results)

    def _run_one(self, stage: BatchedStage, inp: StageBatchInput) -> BatchedStageResult:
        started = time.perf_counter()
        given = StageInput(blob=inp.blob, stage=stage.name, options=inp.options)
        with tracer.start_as_current_span(f"RunStage:{stage.name}") as span:
            span.set_attribute("conveyor.stage", stage.name)
            try:
                output = self._runs[stage.activity](given)
            except CancelledError:
                raise  # the batch is cancelled (the scan did not pass): every stage with it
            except Exception as e:
                seconds = time.perf_counter() - started
                result = _failed(stage, e, seconds)
                span.set_attribute("conveyor.stage.error", result.error or "")
                observe_activity(stage.activity, seconds, result.error_type)
                log.warning("stage %s failed in a batch: %s", stage.name, result.error)
                return result
        seconds = time.perf_counter() - started
        observe_activity(stage.activity, seconds)
        return BatchedStageResult(output=output, duration_ms=int(seconds * 1000))


def _failed(stage: BatchedStage, error: Exception, seconds: float) -> BatchedStageResult:
    if isinstance(error, ApplicationError):
        error_type = error.type or type(error).__name__
        retryable = not error.non_retryable
        reason = error.message or error_type
    else:
        error_type = type(error).__name__
        retryable = True
        reason = str(error) or error_type
    return BatchedStageResult(
        error=reason,
        error_type=error_type,
        retryable=retryable and error_type not in stage.non_retryable_errors,
        duration_ms=int(seconds * 1000),
    )

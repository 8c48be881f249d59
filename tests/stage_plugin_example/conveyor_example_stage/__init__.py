"""An example stage: counts a text file's words and lines, on a task queue of its own.

Its first attempt at each file fails on purpose, so a test sees Temporal retry it as the
spec says; the metadata names the workflow that ran it, so a test sees a reprocess.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from temporalio import activity

from conveyor_core.stages import StageContext, StageInput, StageOutput, StagePlugin, StageSpec

MAX_BYTES = 1024 * 1024


class WordCount:
    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    @activity.defn(name="example_wordcount")
    def run(self, inp: StageInput) -> StageOutput:
        info = activity.info()
        if info.attempt == 1:
            raise RuntimeError("the example stage fails its first attempt on purpose")
        body = self._s3.get_object(
            Bucket=inp.blob.bucket, Key=inp.blob.key, Range=f"bytes=0-{MAX_BYTES - 1}"
        )["Body"]
        text = body.read().decode("utf-8", "replace")
        words = len(text.split())
        return StageOutput(
            detail=f"{words} words (attempt {info.attempt})",
            metadata={
                "words": words,
                "lines": text.count("\n"),
                "counted_by": info.workflow_type,
                "counted_on": info.task_queue,
            },
        )


def _activities(ctx: StageContext) -> Sequence[Callable[..., Any]]:
    return [WordCount(ctx.s3).run]


WORDCOUNT = StagePlugin(
    spec=StageSpec(
        name="wordcount",
        activity="example_wordcount",
        content_types=("text/*",),
        label="word count",
        task_queue="example-wordcount",
        start_to_close_seconds=60,
        heartbeat_seconds=None,
        max_attempts=3,
        retry_initial_seconds=0.2,
        writes=("metadata",),
        order=50,
    ),
    activities=_activities,
)

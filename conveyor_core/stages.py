"""Processing stages as data: what a stage is, what it is given and what it answers.

A stage is registered by a Python entry point in the group `conveyor.stages` (the built-in
ones included: see pyproject.toml and activities/builtin_stages.py) naming a `StagePlugin`.
The ingest workflow never reads the registry itself (that would be I/O, and a later worker
could have other plugins): the worker that verifies a file plans its stages from the
registry, and the plan, a list of `PlannedStage`, is part of the workflow's history.

This module is plain data, imported by workflows; conveyor_core/stage_registry.py loads
the plugins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor_core.types import BlobRef, Thumbnail

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from conveyor_core.settings import Settings

ENTRY_POINT_GROUP = "conveyor.stages"
# The end of a scan stage's detail when the file was too large and its tenant takes that.
UNSCANNED_SUFFIX = "; served unscanned"
# A stage's task_queue: one of these roles is the deployment's queue of that name (settings);
# any other name is a queue of the stage's own, polled by workers with the "stages" role.
QUEUE_ROLES = ("scan", "media")
WRITES = frozenset({"derivatives", "text", "metadata"})


@dataclass(frozen=True)
class StageSpec:
    """A stage as its plugin declares it."""

    name: str  # as the file JSON and `conveyor reprocess --stage` name it
    activity: str  # the activity's registered name: StageInput -> StageOutput
    content_types: tuple[str, ...]  # sniffed types: "application/pdf", "image/*" or "*"
    label: str = ""  # "no <label> for <type>" when it does not apply; the name by default
    task_queue: str = "media"
    start_to_close_seconds: int = 300
    heartbeat_seconds: int | None = 30
    max_attempts: int = 3
    retry_initial_seconds: float = 1.0
    non_retryable_errors: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()  # of WRITES: thumbnails, searchable text, file metadata
    # A gate must pass for the file to be ready (the virus scan): the other stages are
    # cancelled when it fails, and its verdict quarantines the file.
    gate: bool = False
    order: int = 100  # lower first in the file JSON; the stages themselves run at once
    # A small file's batchable stages that share a task queue run one after the other in one
    # activity (`stage_batch`), downloading the bytes once: each activity costs the
    # orchestration about as much as a small file's work. Only for a synchronous activity
    # that needs nothing of its activity's own info (it runs inside the batch's); a stage
    # that fails in a batch with a retryable error runs again on its own, with its retries.
    batchable: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.writes) - WRITES
        if unknown:
            raise ValueError(f"stage {self.name!r} writes {sorted(unknown)}: not one of {WRITES}")
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"stage name {self.name!r}: letters, digits, - and _ only")

    def skip_reason(self, content_type: str) -> str | None:
        """Why the stage does not apply to this type; None when it does."""
        return skip_reason(self.content_types, self.label or self.name, content_type)


@dataclass
class StageContext:
    """What a plugin's activities may be built with, shared by every stage of a worker."""

    settings: Settings
    s3: Any  # a boto3 S3 client
    sessions: sessionmaker[Session]


@dataclass(frozen=True)
class StagePlugin:
    """What an entry point of the group `conveyor.stages` names."""

    spec: StageSpec
    # The worker calls this once and registers what it returns on the stage's task queue:
    # the activity named by spec.activity, and any others the stage needs.
    activities: Callable[[StageContext], Sequence[Callable[..., Any]]]


@dataclass
class PlannedStage:
    """One stage of a file's plan: its spec's run options, resolved for this deployment."""

    name: str
    activity: str
    task_queue: str  # the queue's real name
    start_to_close_seconds: int
    heartbeat_seconds: int | None
    max_attempts: int
    retry_initial_seconds: float
    non_retryable_errors: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    gate: bool = False
    skipped_reason: str | None = None  # set: recorded skipped, no activity
    # The spec's rule, in a plan made for no one type (a reprocess meets every type); a
    # file's plan has the answer in `skipped_reason` instead, and a smaller history.
    content_types: list[str] = field(default_factory=list)
    label: str = ""
    # The stages of one file's plan with the same batch (their queue's name) run in one
    # activity; None (and in every plan from before batches): an activity of its own.
    batch: str | None = None

    def skip_reason(self, content_type: str) -> str | None:
        return skip_reason(self.content_types, self.label, content_type)


@dataclass
class StagePlan:
    stages: list[PlannedStage] = field(default_factory=list)

    def get(self, name: str) -> PlannedStage | None:
        return next((s for s in self.stages if s.name == name), None)


@dataclass
class PlanStagesInput:
    content_type: str
    names: list[str] | None = None  # only these (a retry or a reprocess); None: all
    size: int | None = None  # the blob's bytes: a small one's stages may run as a batch


@dataclass
class StageInput:
    blob: BlobRef
    stage: str
    # The deployment's options as the workflow's starter saw them (e.g. "thumbnail_sizes"
    # from the API's or `conveyor reprocess`'s settings); a stage may use any of them.
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageOutput:
    """A stage's answer. Text is written by the stage itself (it can be large); thumbnails
    and metadata come back here and are committed with the file's outcome."""

    skipped_reason: str | None = None  # it ran and found nothing to do
    detail: str | None = None  # one line for the file JSON, e.g. "eng, 2 pages"
    thumbnails: list[Thumbnail] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    # A gate's finding that stops the file (the scan's "infected: …"): quarantined.
    verdict: str | None = None


@dataclass
class BatchedStage:
    """One stage of a batch: its activity, run in the batch's, and the errors it never
    retries."""

    name: str
    activity: str
    non_retryable_errors: list[str] = field(default_factory=list)


@dataclass
class StageBatchInput:
    blob: BlobRef
    stages: list[BatchedStage]  # run in this order
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class BatchedStageResult:
    """A batched stage's own outcome: its output, or the error it raised."""

    output: StageOutput | None = None
    error: str | None = None  # the stage's reason, as the file JSON says it
    error_type: str | None = None
    retryable: bool = False  # the stage may succeed on its own, with its retries
    duration_ms: int = 0


@dataclass
class StageBatchOutput:
    results: dict[str, BatchedStageResult] = field(default_factory=dict)


def skip_reason(patterns: Sequence[str], label: str, content_type: str) -> str | None:
    for pattern in patterns:
        if pattern == "*" or pattern == content_type:
            return None
        if pattern.endswith("/*") and content_type.startswith(pattern[:-1]):
            return None
    return f"no {label} for {content_type}"


def resolve_queue(task_queue: str, settings: Settings) -> str:
    if task_queue == "scan":
        return settings.scan_task_queue
    if task_queue == "media":
        return settings.media_task_queue
    return task_queue


def plan_for(
    specs: Sequence[StageSpec],
    content_type: str,
    settings: Settings,
    names: list[str] | None,
    size: int | None = None,
) -> StagePlan:
    chosen = [s for s in specs if names is None or s.name in names]
    plan = StagePlan(
        stages=[
            PlannedStage(
                name=s.name,
                activity=s.activity,
                task_queue=resolve_queue(s.task_queue, settings),
                start_to_close_seconds=s.start_to_close_seconds,
                heartbeat_seconds=s.heartbeat_seconds,
                max_attempts=s.max_attempts,
                retry_initial_seconds=s.retry_initial_seconds,
                non_retryable_errors=list(s.non_retryable_errors),
                writes=list(s.writes),
                gate=s.gate,
                skipped_reason=s.skip_reason(content_type) if content_type else None,
                content_types=[] if content_type else list(s.content_types),
                label="" if content_type else s.label or s.name,
            )
            for s in sorted(chosen, key=lambda s: (s.order, s.name))
        ]
    )
    limit = settings.stage_batch_max_bytes
    if size is not None and limit > 0 and size <= limit:
        _batch(plan, {s.name for s in chosen if s.batchable and not s.gate})
    return plan


def _batch(plan: StagePlan, batchable: set[str]) -> None:
    """Batches the stages that apply, may be batched and share a queue, two or more."""
    queues: dict[str, list[PlannedStage]] = {}
    for planned in plan.stages:
        if planned.name in batchable and planned.skipped_reason is None:
            queues.setdefault(planned.task_queue, []).append(planned)
    for queue, members in queues.items():
        if len(members) > 1:
            for planned in members:
                planned.batch = queue

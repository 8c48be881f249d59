"""IngestWorkflow: one per upload, id `ingest-<file_id>` (DESIGN.md §1).

Waits for the object (a store event, or a reconcile HEAD when no event came), verifies it,
claims its blob by SHA-256, runs scan, thumbnails and OCR in parallel once per blob,
publishes clean public files to the edge and commits the outcome. Deterministic: every side
effect is an activity.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    TimeoutError,
)

with workflow.unsafe.imports_passed_through():
    from activities.dedup import DedupActivities
    from activities.intake import IntakeActivities
    from activities.metadata import MetadataActivities
    from activities.outcome import OutcomeActivities
    from activities.seal import SealActivities
    from activities.store import StoreActivities
    from activities.verify import VerifyActivities
    from activities.webhooks import WebhookActivities
    from conveyor_core.stage_rules import legacy_ocr_skip_reason, legacy_thumbnails_skip_reason
    from conveyor_core.stages import (
        UNSCANNED_SUFFIX,
        BatchedStageResult,
        PlannedStage,
        StageBatchOutput,
        StageOutput,
        StagePlan,
    )
    from conveyor_core.types import (
        FILE_MISSING_ERROR,
        INVALID_DOCUMENT_ERROR,
        INVALID_IMAGE_ERROR,
        RETRY_ABANDONED_ERROR,
        SCAN_TOO_LARGE_ERROR,
        BlobRef,
        BlobRole,
        BlobState,
        BlobStatus,
        ClaimInput,
        ClaimResult,
        CommitInput,
        DiscardInput,
        EnqueueWebhooksInput,
        EnqueueWebhooksResult,
        EventsPage,
        EventsQuery,
        FileStatus,
        IngestInput,
        IngestProgress,
        IngestResult,
        ObjectProbe,
        ObjectRef,
        ObjectUploaded,
        OcrInput,
        OcrResult,
        ProgressEvent,
        PublishInput,
        PublishResult,
        QuarantineInput,
        RetryClaimInput,
        RetryRequest,
        ScanInput,
        ScanResult,
        SealAndVerifyInput,
        SealInput,
        SealResult,
        StageState,
        StageStatus,
        Thumbnail,
        ThumbnailsInput,
        ThumbnailsResult,
        VerifyInput,
        VerifyResult,
        Visibility,
        tenant_sealed_key,
    )
    from workflows import search_attributes
    from workflows.stage_runs import plan_stages, run_stage, run_stage_batch
    from workflows.webhooks import start_deliveries

T = TypeVar("T")
WAIT_CANCELLATION = workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED

STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
)
DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,  # a committed outcome must never be lost: retry until Postgres is back
    non_retryable_error_types=[
        FILE_MISSING_ERROR,
        "FileStatusConflict",
        "BlobMissing",
        "BlobGone",
    ],
)
# The scanner being down fails the file after about 15 s of retries: never ready unscanned.
SCAN_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=[SCAN_TOO_LARGE_ERROR],
)
MEDIA_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_attempts=3,
    non_retryable_error_types=[INVALID_IMAGE_ERROR, INVALID_DOCUMENT_ERROR],
)
# A duplicate polls (as retries of await_blob) until the blob's owner has finished.
AWAIT_BLOB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=1.5,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=0,
    non_retryable_error_types=["BlobMissing"],
)
# An event that came before its object no longer fails the upload: the workflow waits on.
EARLY_EVENT_PATCH = "wait-on-after-early-event"
# A landed object is moved to its sealed key (no client URL names it) before it is verified.
SEAL_PATCH = "seal-before-verify"
# A duplicate of bytes only another tenant held runs its stages at the owner's pace, as if
# they ran for it: finishing at once would tell the tenant someone else holds these bytes.
PACE_PATCH = "pace-other-tenants-duplicate"
# Thumbnails and OCR are scheduled only for the types they apply to; the others are
# recorded skipped with no activity (a text file had two that only answered "skipped").
STAGE_RULES_PATCH = "schedule-only-stages-that-apply"
# The blob's claim, the outcome's commit and the webhooks' enqueue are short Postgres
# transactions: run as local activities (in the workflow's own worker, one marker in the
# history) instead of activity tasks the server schedules, dispatches and records in three
# events each, with a workflow task after each.
LOCAL_DB_PATCH = "database-steps-as-local-activities"
# Every patch records a marker and upserts TemporalChangeVersion (a visibility write) in each
# new run: a run started from here on records this one alone, and does all the patches above
# say. Histories from before it replay through them, as they ran. It also seals and verifies
# in one activity, and commits the outcome and enqueues its webhooks in one local activity.
ONE_PATCH_2026_12 = "ingest-2026-12"
# All the above, and the stages are plugins: the run plans the installed stages (a local
# activity, so the plan is in the history) and runs each one's activity as its spec says.
CURRENT_PATCH = "ingest-2026-12-stage-plugins"
# A worker that dies mid-activity is noticed when the heartbeats stop, and the activity
# retried elsewhere: within these, not after the start-to-close timeout (minutes to hours).
# Streaming stages beat on every chunk; CPU stages at least every 5 s (subprocesses polled),
# with longer single steps (decoding a large image) in between.
STREAM_HEARTBEAT_TIMEOUT = timedelta(seconds=20)
CPU_HEARTBEAT_TIMEOUT = timedelta(seconds=30)
# The reconcile probe backs off, so a day-long wait costs a few hundred events, not thousands.
RECONCILE_MAX_INTERVAL = timedelta(minutes=10)
PROCESSING_STAGES = ("scan", "thumbnails", "ocr")
NOT_RUN = "not run: the scan did not pass"


def make_thumbnails(
    blob: BlobRef, sizes: list[int], task_queue: str, **options: Any
) -> Awaitable[ThumbnailsResult]:
    """The thumbnails stage's activity, as ingest and reprocess both run it."""
    return workflow.execute_activity(
        "make_thumbnails",
        ThumbnailsInput(blob=blob, sizes=list(sizes)),
        result_type=ThumbnailsResult,
        task_queue=task_queue,
        start_to_close_timeout=timedelta(minutes=5),
        heartbeat_timeout=CPU_HEARTBEAT_TIMEOUT,
        retry_policy=MEDIA_RETRY,
        **options,
    )


def ocr_blob(blob: BlobRef, task_queue: str, **options: Any) -> Awaitable[OcrResult]:
    """The OCR stage's activity, as ingest and reprocess both run it."""
    return workflow.execute_activity(
        "ocr_blob",
        OcrInput(blob=blob),
        result_type=OcrResult,
        task_queue=task_queue,
        start_to_close_timeout=timedelta(hours=1),
        heartbeat_timeout=CPU_HEARTBEAT_TIMEOUT,
        retry_policy=MEDIA_RETRY,
        **options,
    )


def quarantine_blob(blob: BlobRef, quarantine_bucket: str) -> Awaitable[None]:
    """Moves refused bytes out of every client's reach, as ingest and reprocess both do."""
    return workflow.execute_activity_method(
        StoreActivities.quarantine_object,
        QuarantineInput(blob=blob, quarantine_bucket=quarantine_bucket),
        start_to_close_timeout=timedelta(minutes=30),
        heartbeat_timeout=STREAM_HEARTBEAT_TIMEOUT,
        retry_policy=STORE_RETRY,
    )


def unscanned_refused(state: BlobState, scan_oversize: str) -> bool:
    """Ready bytes that were served unscanned (too large), for a tenant that refuses that."""
    scan = state.stages.get("scan")
    unscanned = scan is not None and scan.status is StageStatus.SKIPPED
    return state.status is BlobStatus.READY and unscanned and scan_oversize != "serve_unscanned"


def unscanned_reason(state: BlobState) -> str:
    detail = state.stages["scan"].detail or "too large to scan"
    return detail.removesuffix(UNSCANNED_SUFFIX)


if TYPE_CHECKING:
    # By stage name; None: it failed or was skipped. (Only for the checker: a module-level
    # dict alias would be state the workflow modules are checked not to hold.)
    StageOutputs = dict[str, StageOutput | None]


def _distinct(tasks: Iterable[asyncio.Task[StageOutputs]]) -> list[asyncio.Task[StageOutputs]]:
    """Each task once, in order: a batch's stages share one."""
    return list(dict.fromkeys(tasks))


def _left(planned: PlannedStage, tried: BatchedStageResult | None) -> int:
    """The attempts a stage has left on its own after its batch: all of them if the batch
    did not get to it; 0 stays unlimited."""
    if tried is None or planned.max_attempts == 0:
        return planned.max_attempts
    return planned.max_attempts - 1


def workflow_id_for(file_id: str) -> str:
    return f"ingest-{file_id}"


def failure_reason(error: ActivityError) -> str:
    """One sentence for a stage's detail: the activity's own reason where it gave one."""
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.message:
        return cause.message
    if isinstance(cause, TimeoutError):
        return "timed out"
    return str(cause or error)


def _file_missing(error: ActivityError | ApplicationError) -> bool:
    # A local activity's failure comes as its own error, not wrapped in an ActivityError.
    cause = error.cause if isinstance(error, ActivityError) else error
    return isinstance(cause, ApplicationError) and cause.type == FILE_MISSING_ERROR


def _database_step(method: Callable[[Any, Any], Any], arg: Any, *, local: bool) -> Awaitable[Any]:
    """A short Postgres step (claim, commit, enqueue): a local activity, but an activity task
    in a history from before LOCAL_DB_PATCH, which replays as it ran."""
    options: dict[str, Any] = {
        "start_to_close_timeout": timedelta(seconds=30),
        "retry_policy": DATABASE_RETRY,
    }
    if local:
        return workflow.execute_local_activity_method(method, arg, **options)
    return workflow.execute_activity_method(method, arg, **options)


@workflow.defn
class IngestWorkflow:
    def __init__(self) -> None:
        self._uploaded: ObjectUploaded | None = None
        self._cancel_requested = False
        self._progress = IngestProgress(
            file_id="",
            status=FileStatus.AWAITING_UPLOAD,
            stages={name: StageState() for name in ("verify", *PROCESSING_STAGES)},
        )
        self._events: list[ProgressEvent] = []
        self._event_seq_offset = 0
        self._last_seen: dict[str, tuple[str, str | None]] = {}  # "" is the file status
        self._retried_stages: list[str] = []  # a ready file's retry: the stages it re-runs
        self._current = False  # ONE_PATCH_2026_12: this run does what the patches before say
        self._plugins = False  # CURRENT_PATCH: its stages are the planned plugins
        self._metadata: dict[str, Any] = {}  # what the stages found out about the bytes

    @workflow.signal
    def object_uploaded(self, event: ObjectUploaded) -> None:
        # Events may be delivered twice: only the first one counts.
        if self._uploaded is None:
            self._uploaded = event

    @workflow.signal
    def cancel(self) -> None:
        self._cancel_requested = True

    @workflow.query
    def status(self) -> IngestProgress:
        return self._progress

    @workflow.query
    def events(self, query: EventsQuery) -> EventsPage:
        return EventsPage(events=[e for e in self._events if e.seq > query.after_seq])

    @workflow.run
    async def run(self, inp: IngestInput) -> IngestResult:
        self._plugins = workflow.patched(CURRENT_PATCH)
        self._current = self._plugins or workflow.patched(ONE_PATCH_2026_12)
        if self._plugins and inp.stage_names is not None:
            self._progress.stages = {n: StageState() for n in ("verify", *inp.stage_names)}
        self._progress.file_id = inp.file_id
        self._event_seq_offset = inp.event_seq_offset
        if inp.retry is not None:
            return await self._retry(inp, inp.retry)
        own = ObjectRef(bucket=inp.bucket, key=inp.object_key)
        if inp.deduplicated:
            self._progress.stages["verify"] = StageState(
                StageStatus.SKIPPED, "deduplicated: the tenant already holds these bytes"
            )
            declared = BlobRef(
                bucket=inp.bucket,
                key=inp.object_key,
                sha256=inp.declared_sha256 or "",
                size=inp.declared_size,
                content_type=inp.declared_content_type,
            )
            self._set_status(FileStatus.PROCESSING)
            return await self._claim_and_process(inp, declared)

        self._record_events()
        deadline = workflow.now() + timedelta(seconds=inp.expire_after_seconds)
        while True:
            if not await self._wait_for_object(inp, own, deadline):
                status = FileStatus.CANCELLED if self._cancel_requested else FileStatus.EXPIRED
                detail = (
                    "the upload was cancelled"
                    if self._cancel_requested
                    else f"no object arrived within {inp.expire_after_seconds} s"
                )
                await workflow.execute_activity_method(
                    StoreActivities.discard_upload,
                    DiscardInput(object=own, multipart_upload_id=inp.multipart_upload_id),
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=STORE_RETRY,
                )
                return await self._finish_unless_uncommitted(inp, status, detail)

            self._set_status(FileStatus.PROCESSING)
            if self._current:
                held = self._sealed_ref(inp)
                verified = await self._verify(inp, held, sealing=self._seal_input(inp, held))
            elif workflow.patched(SEAL_PATCH):
                held = self._sealed_ref(inp)
                if (await self._seal(inp, held)).landed:
                    verified = await self._verify(inp, held)
                else:
                    verified = VerifyResult(ok=False, detail=None, missing=True)
            else:
                held = own
                verified = await self._verify(inp, held)
            if not (verified.missing and self._patched(EARLY_EVENT_PATCH)):
                break
            # The event came before its object (or named an object that never came): the
            # upload still waits for its bytes, until the same deadline.
            self._uploaded = None
            self._progress.stages["verify"] = StageState()
            self._set_status(FileStatus.AWAITING_UPLOAD)
        if not verified.ok:
            await self._delete(held)
            return await self._finish(inp, FileStatus.FAILED, f"verify: {verified.detail}")
        assert verified.sha256 is not None and verified.size is not None
        mine = BlobRef(
            bucket=inp.bucket,
            key=held.key,
            sha256=verified.sha256,
            size=verified.size,
            content_type=verified.content_type or "application/octet-stream",
            etag=verified.etag,
        )
        return await self._claim_and_process(inp, mine)

    # --- waiting for the bytes -----------------------------------------------------------

    async def _wait_for_object(self, inp: IngestInput, ref: ObjectRef, deadline: datetime) -> bool:
        """True once the object is there; False if the upload expired or was cancelled."""
        interval = timedelta(seconds=inp.reconcile_after_seconds)
        while self._uploaded is None and not self._cancel_requested:
            remaining = deadline - workflow.now()
            if remaining <= timedelta(0):
                return False
            try:
                await workflow.wait_condition(
                    lambda: self._uploaded is not None or self._cancel_requested,
                    timeout=min(interval, remaining),
                )
            except builtins.TimeoutError:
                probe = await self._probe(ref)
                if probe.exists and self._uploaded is None:
                    self._uploaded = ObjectUploaded(
                        bucket=ref.bucket, key=ref.key, size=probe.size, source="reconcile"
                    )
                interval = min(interval * 2, RECONCILE_MAX_INTERVAL)
        return self._uploaded is not None and not self._cancel_requested

    def _patched(self, patch_id: str) -> bool:
        """workflow.patched(patch_id), without its marker in a run that CURRENT_PATCH covers."""
        return self._current or workflow.patched(patch_id)

    @staticmethod
    def _sealed_ref(inp: IngestInput) -> ObjectRef:
        key = inp.sealed_key or tenant_sealed_key(inp.tenant_id, inp.upload_id)
        return ObjectRef(bucket=inp.bucket, key=key)

    @staticmethod
    def _seal_input(inp: IngestInput, sealed: ObjectRef) -> SealInput:
        return SealInput(
            file_id=inp.file_id,
            upload_id=inp.upload_id,
            bucket=inp.bucket,
            incoming_key=inp.object_key,
            sealed_key=sealed.key,
        )

    async def _seal(self, inp: IngestInput, sealed: ObjectRef) -> SealResult:
        return await workflow.execute_activity_method(
            SealActivities.seal_upload,
            self._seal_input(inp, sealed),
            start_to_close_timeout=timedelta(minutes=30),  # a copy where the store has no rename
            heartbeat_timeout=STREAM_HEARTBEAT_TIMEOUT,
            retry_policy=STORE_RETRY,
        )

    async def _verify(
        self, inp: IngestInput, held: ObjectRef, *, sealing: SealInput | None = None
    ) -> VerifyResult:
        """Verifies the held object; with `sealing`, seals it first in the same activity."""
        check = VerifyInput(
            bucket=held.bucket,
            key=held.key,
            declared_size=inp.declared_size,
            declared_sha256=inp.declared_sha256,
            size_is_limit=inp.size_is_limit,
        )
        options: dict[str, Any] = {
            "heartbeat_timeout": STREAM_HEARTBEAT_TIMEOUT,
            "retry_policy": STORE_RETRY,
        }
        run: Awaitable[VerifyResult]
        if sealing is not None:
            run = workflow.execute_activity_method(
                IntakeActivities.seal_and_verify,
                SealAndVerifyInput(seal=sealing, verify=check),
                start_to_close_timeout=timedelta(hours=2, minutes=30),
                **options,
            )
        else:
            run = workflow.execute_activity_method(
                VerifyActivities.verify_object,
                check,
                start_to_close_timeout=timedelta(hours=2),
                **options,
            )
        result = await self._stage("verify", run)
        if result is None:
            self._record_events()
            return VerifyResult(ok=False, detail=self._progress.stages["verify"].detail)
        if result.missing and self._patched(EARLY_EVENT_PATCH):
            return result  # not a verdict on the bytes: the caller waits for them again
        stage = self._progress.stages["verify"]
        stage.status = StageStatus.SUCCEEDED if result.ok else StageStatus.FAILED
        stage.detail = result.content_type if result.ok else result.detail
        self._record_events()
        return result

    # --- dedup and the stages ------------------------------------------------------------

    async def _claim_and_process(self, inp: IngestInput, mine: BlobRef) -> IngestResult:
        claiming = ClaimInput(file_id=inp.file_id, blob=mine, existing_only=inp.deduplicated)
        # A DEDUPLICATED upload claims at once, retrying until the API's row is visible; a
        # row that never comes (the API failed after starting this workflow) must not keep
        # it retrying forever.
        claim_deadline = timedelta(seconds=inp.expire_after_seconds) if inp.deduplicated else None
        try:
            # A DEDUPLICATED claim keeps its deadline as an activity task: a local activity's
            # retries are not bounded by schedule_to_close.
            if not inp.deduplicated:
                claim: ClaimResult = await _database_step(
                    DedupActivities.claim_blob, claiming, local=self._patched(LOCAL_DB_PATCH)
                )
            else:
                claim = await workflow.execute_activity_method(
                    DedupActivities.claim_blob,
                    claiming,
                    start_to_close_timeout=timedelta(seconds=30),
                    schedule_to_close_timeout=claim_deadline,
                    retry_policy=DATABASE_RETRY,
                )
        except ActivityError as e:
            # Out of time: a timeout, or (between retries) the last attempt's own error.
            timed_out = isinstance(e.cause, TimeoutError) or e.retry_state == RetryState.TIMEOUT
            if not (inp.deduplicated and timed_out):
                raise
            detail = f"its bytes could not be claimed within {inp.expire_after_seconds} s"
            return await self._finish_unless_uncommitted(inp, FileStatus.FAILED, detail)
        state = claim.state
        if not inp.deduplicated and state.blob.key != mine.key:
            # These bytes are already held elsewhere: never copied, this object just goes.
            await self._delete(ObjectRef(bucket=mine.bucket, key=mine.key))
        if claim.role is BlobRole.DUPLICATE:
            paced = claim.other_tenant and self._patched(PACE_PATCH)
            started = workflow.now()
            if paced:
                self._mark_stages_running()
            if not state.status.is_terminal:
                state = await workflow.execute_activity_method(
                    DedupActivities.await_blob,
                    state.blob.sha256,
                    schedule_to_close_timeout=timedelta(hours=6),
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=AWAIT_BLOB_RETRY,
                )
            if paced:
                await self._end_stages_at_owners_pace(state, started)
            return await self._finish_as_duplicate(inp, state, paced=paced)
        return await self._process_as_owner(inp, state.blob)

    def _processing_names(self, owners: BlobState | None = None) -> tuple[str, ...]:
        """The stages a blob's processing runs: the owner's where known (plugins)."""
        if not self._plugins:
            return PROCESSING_STAGES
        if owners is not None:
            return tuple(owners.stages)
        return tuple(n for n in self._progress.stages if n != "verify")

    def _mark_stages_running(self) -> None:
        for name in self._processing_names():
            self._progress.stages[name] = StageState(StageStatus.RUNNING)
        self._record_events()

    async def _end_stages_at_owners_pace(self, state: BlobState, started: datetime) -> None:
        """Each stage ends with the owner's outcome, about as long after `started` as it
        took the owner (within 10 %), in the order they would have ended."""
        ends = []
        for name in self._processing_names(state):
            outcome = state.stages.get(name)
            if outcome is None:
                continue
            took = timedelta(milliseconds=outcome.duration_ms or 0)
            ends.append((started + took * (0.9 + 0.2 * workflow.random().random()), name, outcome))
        for end, name, outcome in sorted(ends, key=lambda e: e[0]):
            if (wait := end - workflow.now()) > timedelta(0):
                await workflow.sleep(wait)
            took_ms = int((workflow.now() - started).total_seconds() * 1000)
            self._progress.stages[name] = StageState(outcome.status, outcome.detail, took_ms)
            self._record_events()

    async def _process_as_owner(self, inp: IngestInput, blob: BlobRef) -> IngestResult:
        if self._plugins:
            return await self._process_planned(inp, blob)
        scan_task = asyncio.ensure_future(self._scan(inp, blob))
        thumbnails_task = asyncio.ensure_future(self._thumbnails(inp, blob))
        ocr_task = asyncio.ensure_future(self._ocr(inp, blob))
        scan = await scan_task
        if scan is None or scan.infected:
            for task in (thumbnails_task, ocr_task):
                task.cancel()
            await asyncio.gather(thumbnails_task, ocr_task, return_exceptions=True)
            self._skip_pending(NOT_RUN)
            if scan is None:
                detail = f"scan: {self._progress.stages['scan'].detail}"
                return await self._finish(inp, FileStatus.FAILED, detail, blob, BlobStatus.FAILED)
            await quarantine_blob(blob, inp.quarantine_bucket)
            return await self._finish(
                inp, FileStatus.QUARANTINED, scan.detail, blob, BlobStatus.QUARANTINED
            )
        thumbnails = await thumbnails_task
        await ocr_task
        return await self._finish_ready(inp, blob, thumbnails.thumbnails if thumbnails else [])

    async def _finish_ready(
        self, inp: IngestInput, blob: BlobRef, thumbnails: list[Thumbnail]
    ) -> IngestResult:
        """The owner's processing passed: published (if public) and committed ready."""
        public_key = await self._publish(inp, blob, None)
        return await self._finish(
            inp,
            FileStatus.READY,
            None,
            blob,
            BlobStatus.READY,
            thumbnails=thumbnails,
            public_key=public_key,
        )

    async def _finish_as_duplicate(
        self, inp: IngestInput, state: BlobState, *, paced: bool = False
    ) -> IngestResult:
        for name in self._processing_names(state):
            if name in state.stages and not paced:
                self._progress.stages[name] = state.stages[name]
        if self._plugins and unscanned_refused(state, inp.scan_oversize):
            # The owner's tenant takes files too large to scan; this one does not.
            detail = f"scan: {unscanned_reason(state)}"
            return await self._finish(inp, FileStatus.FAILED, detail, state.blob)
        if state.status is BlobStatus.READY:
            public_key = await self._publish(inp, state.blob, state.public_key)
            return await self._finish(
                inp, FileStatus.READY, None, state.blob, public_key=public_key
            )
        if state.status is BlobStatus.QUARANTINED:
            detail = self._progress.stages["scan"].detail or "infected"
            return await self._finish(inp, FileStatus.QUARANTINED, detail, state.blob)
        detail = f"scan: {self._progress.stages['scan'].detail}"
        return await self._finish(inp, FileStatus.FAILED, detail, state.blob)

    # --- the planned stages (plugins) --------------------------------------------------------

    async def _process_planned(self, inp: IngestInput, blob: BlobRef) -> IngestResult:
        """Every installed stage that applies, at once; a gate (the scan) that fails or finds
        something stops the others and decides the file's end."""
        plan = await plan_stages(blob.content_type, size=blob.size)
        self._adopt_plan(plan, whole=True)
        runs = self._start_stages(inp, plan, blob)
        for gate in plan.stages:
            if not gate.gate or gate.name not in runs:
                continue
            out = (await runs[gate.name]).get(gate.name)
            if out is not None and out.verdict is None:
                continue
            others = _distinct(task for name, task in runs.items() if name != gate.name)
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            self._skip_pending(f"not run: the {gate.name} did not pass")
            if out is None:
                detail = f"{gate.name}: {self._progress.stages[gate.name].detail}"
                return await self._finish(inp, FileStatus.FAILED, detail, blob, BlobStatus.FAILED)
            await quarantine_blob(blob, inp.quarantine_bucket)
            return await self._finish(
                inp, FileStatus.QUARANTINED, out.verdict, blob, BlobStatus.QUARANTINED
            )
        made = await self._thumbnails_made(runs)
        return await self._finish_ready(inp, blob, made)

    @staticmethod
    async def _thumbnails_made(runs: dict[str, asyncio.Task[StageOutputs]]) -> list[Thumbnail]:
        outputs: StageOutputs = {}
        for task in _distinct(runs.values()):
            outputs.update(await task)
        return [t for name in runs if (out := outputs.get(name)) for t in out.thumbnails]

    def _adopt_plan(self, plan: StagePlan, *, whole: bool) -> None:
        """The file shows the planned stages (whole: only those, in the plan's order), each
        one that does not apply skipped with its reason."""
        stages = self._progress.stages
        if whole:
            stages = {"verify": stages.get("verify") or StageState()}
        for planned in plan.stages:
            stages[planned.name] = self._progress.stages.get(planned.name) or StageState()
            if planned.skipped_reason is not None:
                stages[planned.name] = StageState(StageStatus.SKIPPED, planned.skipped_reason, 0)
        self._progress.stages = stages
        self._record_events()

    def _start_stages(
        self, inp: IngestInput, plan: StagePlan, blob: BlobRef
    ) -> dict[str, asyncio.Task[StageOutputs]]:
        """Each stage that applies, at once: alone, or with the others of its batch (the
        same task for each of them)."""
        runs: dict[str, asyncio.Task[StageOutputs]] = {}
        batches: dict[str, list[PlannedStage]] = {}
        for planned in plan.stages:
            if planned.skipped_reason is not None:
                continue
            if planned.batch is not None:
                batches.setdefault(planned.batch, []).append(planned)
            else:
                runs[planned.name] = asyncio.ensure_future(self._run_alone(inp, planned, blob))
        for members in batches.values():
            task = asyncio.ensure_future(self._run_batch(inp, members, blob))
            runs.update((m.name, task) for m in members)
        return runs

    def _stage_options(self, inp: IngestInput) -> dict[str, Any]:
        return {"thumbnail_sizes": list(inp.thumbnail_sizes), "scan_oversize": inp.scan_oversize}

    async def _run_alone(
        self, inp: IngestInput, planned: PlannedStage, blob: BlobRef
    ) -> StageOutputs:
        return {planned.name: await self._run_planned(inp, planned, blob)}

    async def _run_planned(
        self, inp: IngestInput, planned: PlannedStage, blob: BlobRef
    ) -> StageOutput | None:
        # A gate is cancelled only as the workflow ends; the others are awaited until their
        # activity stops, so no thumbnail is written after the outcome is committed.
        options: dict[str, Any] = {}
        if not planned.gate:
            options["cancellation_type"] = WAIT_CANCELLATION
        run = run_stage(planned, blob, self._stage_options(inp), **options)
        out = await self._stage(planned.name, run)
        self._take_output(planned.name, out)
        return out

    def _take_output(self, name: str, out: StageOutput | None) -> None:
        if out is not None:
            if out.verdict is not None:
                self._progress.stages[name].detail = out.verdict
            else:
                self._record_optional_stage(name, out.skipped_reason, out.detail)
            self._metadata.update(out.metadata)
        self._record_events()

    async def _run_batch(
        self, inp: IngestInput, members: list[PlannedStage], blob: BlobRef
    ) -> StageOutputs:
        """A batch's stages in one activity. A stage that failed there with an error it may
        not meet again runs on its own with the rest of its retries; if the batch itself
        failed (its worker lost, out of time), every stage of it runs on its own."""
        for planned in members:
            self._progress.stages[planned.name].status = StageStatus.RUNNING
        self._record_events()
        run = run_stage_batch(
            members, blob, self._stage_options(inp), cancellation_type=WAIT_CANCELLATION
        )
        try:
            batch: StageBatchOutput | None = await run
        except ActivityError:
            batch = None
        except asyncio.CancelledError:
            for planned in members:
                stage = self._progress.stages[planned.name]
                stage.status, stage.detail = StageStatus.SKIPPED, NOT_RUN
            self._record_events()
            return dict.fromkeys((m.name for m in members), None)
        outputs: StageOutputs = {}
        again: list[PlannedStage] = []
        for planned in members:
            result = batch.results.get(planned.name) if batch is not None else None
            if result is None or (result.retryable and planned.max_attempts != 1):
                again.append(
                    dataclasses.replace(planned, batch=None, max_attempts=_left(planned, result))
                )
                continue
            stage = self._progress.stages[planned.name]
            stage.duration_ms = result.duration_ms
            if result.output is None:
                stage.status, stage.detail = StageStatus.FAILED, result.error
            else:
                stage.status = StageStatus.SUCCEEDED
            outputs[planned.name] = result.output
            self._take_output(planned.name, result.output)
        retried = await asyncio.gather(*(self._run_planned(inp, p, blob) for p in again))
        outputs.update(zip((p.name for p in again), retried, strict=True))
        return outputs

    # --- the stages before plugins (histories from before CURRENT_PATCH) ------------------

    async def _scan(self, inp: IngestInput, blob: BlobRef) -> ScanResult | None:
        result = await self._stage(
            "scan",
            workflow.execute_activity(
                "scan_blob",
                ScanInput(blob=blob),
                result_type=ScanResult,
                task_queue=inp.scan_task_queue,
                start_to_close_timeout=timedelta(hours=1),
                heartbeat_timeout=STREAM_HEARTBEAT_TIMEOUT,
                retry_policy=SCAN_RETRY,
            ),
        )
        if result is not None:
            self._progress.stages["scan"].detail = result.detail
        self._record_events()
        return result

    async def _thumbnails(self, inp: IngestInput, blob: BlobRef) -> ThumbnailsResult | None:
        if self._skipped_by_rule("thumbnails", legacy_thumbnails_skip_reason(blob.content_type)):
            return None
        result = await self._stage(
            "thumbnails",
            make_thumbnails(
                blob,
                inp.thumbnail_sizes,
                inp.media_task_queue,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            ),
        )
        if result is not None:
            self._record_optional_stage("thumbnails", result.skipped_reason, result.detail)
        self._record_events()
        return result

    async def _ocr(self, inp: IngestInput, blob: BlobRef) -> OcrResult | None:
        if self._skipped_by_rule("ocr", legacy_ocr_skip_reason(blob.content_type)):
            return None
        result = await self._stage(
            "ocr",
            ocr_blob(
                blob,
                inp.media_task_queue,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            ),
        )
        if result is not None:
            self._record_optional_stage("ocr", result.skipped_reason, result.detail)
        self._record_events()
        return result

    def _scanned(self) -> bool:
        """False for bytes served unscanned (too large to scan): the only skipped scan."""
        scan = self._progress.stages.get("scan")
        return scan is None or scan.status is not StageStatus.SKIPPED

    async def _publish(self, inp: IngestInput, blob: BlobRef, public_key: str | None) -> str | None:
        if inp.visibility is not Visibility.PUBLIC or public_key is not None:
            return public_key
        published: PublishResult = await workflow.execute_activity(
            "publish_blob",
            PublishInput(blob=blob, scanned=self._scanned()),
            result_type=PublishResult,
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=STREAM_HEARTBEAT_TIMEOUT,
            retry_policy=STORE_RETRY,
        )
        return published.public_key

    async def _stage(self, name: str, run: Awaitable[T]) -> T | None:
        """Runs one stage's activity, keeping its status, detail and duration current.

        A failed activity marks the stage failed with its reason and returns None.
        """
        stage = self._progress.stages[name]
        stage.status = StageStatus.RUNNING
        self._record_events()
        started = workflow.now()
        try:
            result = await run
        except ActivityError as e:
            stage.status, stage.detail = StageStatus.FAILED, failure_reason(e)
            return None
        except asyncio.CancelledError:
            stage.status, stage.detail = StageStatus.SKIPPED, NOT_RUN
            return None
        finally:
            stage.duration_ms = int((workflow.now() - started).total_seconds() * 1000)
        stage.status = StageStatus.SUCCEEDED
        return result

    def _skipped_by_rule(self, name: str, reason: str | None) -> bool:
        """Records the stage skipped, with no activity, when it does not apply to the type
        (not in a history from before the rule, which ran the activity to learn it)."""
        if reason is None or not self._patched(STAGE_RULES_PATCH):
            return False
        stage = self._progress.stages[name]
        stage.status, stage.detail, stage.duration_ms = StageStatus.SKIPPED, reason, 0
        self._record_events()
        return True

    def _record_optional_stage(self, name: str, skipped: str | None, detail: str | None) -> None:
        stage = self._progress.stages[name]
        if skipped is not None:
            stage.status, stage.detail = StageStatus.SKIPPED, skipped
        else:
            stage.detail = detail

    # --- retry: a new run of a finished file's workflow -----------------------------------

    async def _retry(self, inp: IngestInput, retry: RetryRequest) -> IngestResult:
        """Re-runs a finished file's failed stages on its blob (POST /v1/files/{id}/retry).

        Nothing to wait for or verify: the blob's bytes were verified when they came. A
        failed file goes through the processing again, as the blob's owner or reusing the
        outcome of the run that owns it now; a ready file re-runs only its failed
        thumbnails or OCR, and stays ready.
        """
        rescan = retry.previous_status is FileStatus.FAILED
        self._progress.stages.update(retry.file_stages)
        # The file's event log goes on (numbered after inp.event_seq_offset) from what the
        # file already showed: only what changes from there is news.
        for name, stage in retry.file_stages.items():
            self._last_seen[name] = (stage.status.value, stage.detail)
        self._last_seen[""] = (retry.previous_status.value, None)
        self._set_status(FileStatus.PROCESSING if rescan else retry.previous_status)
        try:
            claim: ClaimResult = await workflow.execute_activity_method(
                DedupActivities.claim_retry,
                RetryClaimInput(
                    file_id=inp.file_id,
                    sha256=retry.blob.sha256,
                    previous_status=retry.previous_status,
                    stages=list(retry.stages),
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=DATABASE_RETRY,
            )
        except ActivityError as e:
            if isinstance(e.cause, ApplicationError) and e.cause.type == RETRY_ABANDONED_ERROR:
                # The API rolled back: the file stays as it was, untouched by this run.
                self._set_status(retry.previous_status)
                return IngestResult(status=retry.previous_status, detail=failure_reason(e))
            raise
        state = claim.state
        if rescan:
            if claim.role is BlobRole.OWNER:
                return await self._process_as_owner(inp, state.blob)
            if not state.status.is_terminal:
                state = await workflow.execute_activity_method(
                    DedupActivities.await_blob,
                    state.blob.sha256,
                    schedule_to_close_timeout=timedelta(hours=6),
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=AWAIT_BLOB_RETRY,
                )
            return await self._finish_as_duplicate(inp, state)
        if self._plugins:
            return await self._retry_planned(inp, retry, state)
        self._retried_stages = [s for s in retry.stages if s in ("thumbnails", "ocr")]
        ocr_task = (
            asyncio.ensure_future(self._ocr(inp, state.blob))
            if "ocr" in self._retried_stages
            else None
        )
        thumbnails = state.thumbnails
        if "thumbnails" in self._retried_stages:
            made = await self._thumbnails(inp, state.blob)
            thumbnails = made.thumbnails if made is not None else thumbnails
        if ocr_task is not None:
            await ocr_task
        # The file stayed ready; its events still end with its (terminal) status, as every
        # run's do, so a client following them knows this retry is over.
        self._last_seen.pop("", None)
        return await self._finish(inp, FileStatus.READY, None, state.blob, thumbnails=thumbnails)

    async def _retry_planned(
        self, inp: IngestInput, retry: RetryRequest, state: BlobState
    ) -> IngestResult:
        """A ready file's failed stages, run again as their plugins say now."""
        plan = await plan_stages(state.blob.content_type, list(retry.stages), state.blob.size)
        plan = StagePlan(stages=[s for s in plan.stages if not s.gate])
        self._retried_stages = [s.name for s in plan.stages]
        self._adopt_plan(plan, whole=False)
        runs = self._start_stages(inp, plan, state.blob)
        made = await self._thumbnails_made(runs)
        self._last_seen.pop("", None)
        return await self._finish(
            inp, FileStatus.READY, None, state.blob, thumbnails=made or state.thumbnails
        )

    # --- small activities and the end ----------------------------------------------------

    async def _probe(self, ref: ObjectRef) -> ObjectProbe:
        return await workflow.execute_activity_method(
            StoreActivities.probe_object,
            ref,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=STORE_RETRY,
        )

    async def _delete(self, ref: ObjectRef) -> None:
        await workflow.execute_activity_method(
            StoreActivities.delete_object,
            ref,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=STORE_RETRY,
        )

    def _skip_pending(self, reason: str) -> None:
        for stage in self._progress.stages.values():
            if stage.status in (StageStatus.PENDING, StageStatus.RUNNING):
                stage.status, stage.detail = StageStatus.SKIPPED, reason

    async def _finish(
        self,
        inp: IngestInput,
        status: FileStatus,
        detail: str | None,
        blob: BlobRef | None = None,
        blob_status: BlobStatus | None = None,
        *,
        thumbnails: list[Thumbnail] | None = None,
        public_key: str | None = None,
    ) -> IngestResult:
        if status is not FileStatus.READY:
            self._skip_pending(detail or status.value)
        # The terminal event is recorded (and kept with the outcome) before the commit; the
        # status query turns terminal only once Postgres holds the outcome.
        self._record_events(status, detail)
        commit = CommitInput(
            file_id=inp.file_id,
            status=status,
            detail=detail,
            stages=self._progress.stages,
            blob_sha256=blob.sha256 if blob else None,
            blob_status=blob_status,
            blob_stages={n: s for n, s in self._progress.stages.items() if n != "verify"},
            thumbnails=thumbnails or [],
            public_key=public_key,
            events=list(self._events),
            retried_stages=self._retried_stages,
            metadata=self._metadata if self._plugins else None,
        )
        queued: EnqueueWebhooksResult | None = None
        if self._current:  # the webhooks are enqueued in the commit's own transaction
            queued = await _database_step(OutcomeActivities.commit_outcome, commit, local=True)
        else:
            await _database_step(
                MetadataActivities.commit_file, commit, local=workflow.patched(LOCAL_DB_PATCH)
            )
        self._progress.detail = detail
        self._set_status(status)
        if queued is not None:
            await start_deliveries(queued)
        else:
            await self._notify_webhooks(inp, status)
        return IngestResult(status=status, detail=detail)

    async def _finish_unless_uncommitted(
        self, inp: IngestInput, status: FileStatus, detail: str
    ) -> IngestResult:
        """Finishes an upload that never got going (expired, cancelled, unclaimed), or ends
        quietly when its file's row was never committed: the API starts the workflow first
        and failed (or died) before committing, so no client heard of this upload, and
        nothing of it is left (its upload was discarded). Not a failed workflow."""
        try:
            return await self._finish(inp, status, detail)
        except (ActivityError, ApplicationError) as e:
            if not _file_missing(e):
                raise
            return IngestResult(status=status, detail="the upload was never committed")

    async def _notify_webhooks(self, inp: IngestInput, status: FileStatus) -> None:
        """Enqueues the tenant's webhooks for this outcome and starts one delivery workflow
        each; they are abandoned, so this workflow ends now and a receiver that is down for
        hours delays nothing here."""
        if not workflow.patched("webhooks"):
            return  # a history from before webhooks: replay it as it ran
        enqueue = EnqueueWebhooksInput(file_id=inp.file_id, status=status)
        queued: EnqueueWebhooksResult = await _database_step(
            WebhookActivities.enqueue_webhooks, enqueue, local=workflow.patched(LOCAL_DB_PATCH)
        )
        await start_deliveries(queued)

    def _set_status(self, status: FileStatus) -> None:
        self._progress.status = status
        self._record_events()
        # Operators find uploads by status in the Temporal UI.
        workflow.upsert_search_attributes([search_attributes.STATUS.value_set(status.value)])

    # --- the progress event log (SSE) ----------------------------------------------------

    def _record_events(self, status: FileStatus | None = None, detail: str | None = None) -> None:
        """Appends an event for each stage whose status or detail changed since the last
        call, then one for the file's status if it changed; stages first, so the terminal
        status is always a file's last event. No commands: replay-safe."""
        for name, stage in self._progress.stages.items():
            self._note("stage", name, stage.status.value, stage.detail)
        if status is None:
            status, detail = self._progress.status, self._progress.detail
        self._note("status", None, status.value, detail)

    def _note(self, kind: str, stage: str | None, status: str, detail: str | None) -> None:
        key = stage or ""
        seen = self._last_seen.get(key)
        if seen == (status, detail):
            return
        self._last_seen[key] = (status, detail)
        if seen is None and status == StageStatus.PENDING.value:
            return  # a stage not started yet is no news
        self._events.append(
            ProgressEvent(
                seq=self._event_seq_offset + len(self._events) + 1,
                kind=kind,
                stage=stage,
                status=status,
                detail=detail,
                at=workflow.now().isoformat(),
            )
        )

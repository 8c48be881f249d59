"""Domain types shared by the API, workflows and activities.

Workflow and activity inputs and outputs are single dataclasses, so fields can be added
(with defaults) without breaking running workflows. Nothing here does I/O.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class FileStatus(StrEnum):
    AWAITING_UPLOAD = "awaiting_upload"
    PROCESSING = "processing"
    READY = "ready"
    QUARANTINED = "quarantined"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    DELETED = "deleted"

    @property
    def is_terminal(self) -> bool:
        return self not in (FileStatus.AWAITING_UPLOAD, FileStatus.PROCESSING)


class StageStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class Visibility(StrEnum):
    PRIVATE = "private"
    PUBLIC = "public"


@dataclass
class StageState:
    status: StageStatus = StageStatus.PENDING
    detail: str | None = None
    duration_ms: int | None = None


# Where an upload's bytes are sent (the only keys a client URL ever names), and where they
# are moved, by the workflow, the moment they land: no client URL can name a sealed key, so
# the bytes verify hashed are the bytes served, forever.
INCOMING_PREFIX = "incoming/"
SEALED_PREFIX = "sealed/"


def incoming_key(tenant_id: str, upload_id: str) -> str:
    return f"{INCOMING_PREFIX}{tenant_id}/{upload_id}"


def new_sealed_key() -> str:
    """A random, server-only name: nothing in it says whose bytes these are, so a download
    URL of a file whose bytes another tenant uploaded first looks like any other."""
    return f"{SEALED_PREFIX}{secrets.token_hex(16)}"


def tenant_sealed_key(tenant_id: str, upload_id: str) -> str:
    """The sealed key of uploads created before sealed keys were random (their workflows
    carry no `sealed_key`)."""
    return f"{SEALED_PREFIX}{tenant_id}/{upload_id}"


@dataclass(frozen=True)
class IngestInput:
    file_id: str
    tenant_id: str
    upload_id: str
    bucket: str
    object_key: str
    declared_size: int
    declared_content_type: str
    declared_sha256: str | None
    expire_after_seconds: int
    reconcile_after_seconds: int
    visibility: Visibility = Visibility.PRIVATE
    # Known at creation: the tenant already holds these bytes, nothing will be uploaded.
    deduplicated: bool = False
    scan_task_queue: str = "scan"
    media_task_queue: str = "media"
    thumbnail_sizes: list[int] = field(default_factory=lambda: [256, 1024])
    quarantine_bucket: str = "conveyor-quarantine"
    # MULTIPART uploads: the store's upload id, aborted if the upload expires or is cancelled.
    multipart_upload_id: str | None = None
    # Where the bytes are moved once they land (None in inputs from before sealing existed:
    # the workflow derives it from the tenant and upload ids).
    sealed_key: str | None = None
    # The client never said the size (a browser widget's upload): declared_size is a limit.
    size_is_limit: bool = False
    # Progress events of this run are numbered after this (a later run of the same file
    # continues its numbering, so SSE clients resuming with Last-Event-ID miss nothing).
    event_seq_offset: int = 0
    # Set for a retry (POST /v1/files/{id}/retry): a new run of the same workflow id that
    # re-runs the failed stages on the file's blob instead of waiting for an upload.
    retry: RetryRequest | None = None
    # The installed stages' names, shown pending until the file's plan names the ones it
    # runs (None in inputs from before stages were plugins: scan, thumbnails and ocr).
    stage_names: list[str] | None = None
    # A file too large to scan: "reject" (fail it) or "serve_unscanned" (the tenant's choice).
    scan_oversize: str = "reject"


@dataclass(frozen=True)
class RetryRequest:
    """What a retry run re-runs: `previous_status` failed re-runs the whole processing
    (scan, then thumbnails, OCR and publish as for a fresh file); ready re-runs only the
    failed optional `stages` (thumbnails, ocr) and the file stays ready. `file_stages` are
    the file's stages as the retry left them (the re-run ones pending), shown from the start."""

    blob: BlobRef
    previous_status: FileStatus
    stages: list[str] = field(default_factory=list)
    file_stages: dict[str, StageState] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestResult:
    status: FileStatus
    detail: str | None = None


@dataclass(frozen=True)
class ObjectUploaded:
    """Signal payload: an object landed (from a store event or from a reconcile HEAD)."""

    bucket: str
    key: str
    size: int | None = None
    etag: str | None = None
    sequencer: str | None = None
    source: str = "event"


@dataclass
class IngestProgress:
    """What the `status` query answers while the workflow runs."""

    file_id: str
    status: FileStatus
    detail: str | None = None
    stages: dict[str, StageState] = field(default_factory=dict)


@dataclass(frozen=True)
class ProgressEvent:
    """One transition of a file's progress: the file's status, or one stage's. `seq` orders
    a file's events (1, 2, ...) and is the SSE event id."""

    seq: int
    kind: str  # "status" or "stage"
    status: str
    at: str  # ISO 8601, workflow time
    stage: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class EventsQuery:
    after_seq: int = 0


@dataclass(frozen=True)
class EventsPage:
    events: list[ProgressEvent] = field(default_factory=list)


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str


@dataclass(frozen=True)
class ObjectProbe:
    exists: bool
    size: int | None = None


@dataclass(frozen=True)
class VerifyInput:
    bucket: str
    key: str
    declared_size: int
    declared_sha256: str | None
    size_is_limit: bool = False  # declared_size is the most it may be, not its size


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    detail: str | None
    sha256: str | None = None
    size: int | None = None
    content_type: str | None = None
    missing: bool = False  # no object under the key (an event came before it, or for nothing)
    etag: str | None = None  # of the object hashed


@dataclass(frozen=True)
class FinalizeInput:
    """Ends a file in a terminal status other than ready (failed, expired, cancelled)."""

    file_id: str
    status: FileStatus
    detail: str | None
    stages: dict[str, StageState]


# --- Processing stages (scan, thumbnails, ocr) -------------------------------------------
# A stage that cannot process its input raises ApplicationError(reason, type=<one of the
# *_ERROR types below>, non_retryable=True); the workflow records `reason` as the stage's
# detail. Transient trouble (a server down) raises anything else and is retried.

SCAN_TOO_LARGE_ERROR = "TooLargeToScan"
SCANNER_ERROR = "ScannerError"
# An archive that expands past clamd's limits (a zip bomb): never ready, not malware either.
SCAN_UNSCANNABLE_ERROR = "Unscannable"
INVALID_IMAGE_ERROR = "InvalidImage"
INVALID_DOCUMENT_ERROR = "InvalidDocument"


@dataclass(frozen=True)
class BlobRef:
    """Verified bytes in the store: where they are and what they are."""

    bucket: str
    key: str
    sha256: str
    size: int
    content_type: str
    # The store's ETag of the object verify hashed: copies of it (publish, quarantine) are
    # made only if the object still has it. None for blobs recorded before it was kept.
    etag: str | None = None


@dataclass(frozen=True)
class ScanInput:
    blob: BlobRef


@dataclass(frozen=True)
class ScanResult:
    infected: bool
    signature: str | None = None  # e.g. "Conveyor.Test.EICAR.UNOFFICIAL"
    detail: str = "clean"


@dataclass(frozen=True)
class ThumbnailsInput:
    blob: BlobRef
    sizes: list[int]


@dataclass(frozen=True)
class Thumbnail:
    size: int  # the requested longest side
    width: int
    height: int
    bucket: str
    key: str  # derivatives/<sha256>/thumb-<size>.<ext>
    content_type: str


@dataclass(frozen=True)
class ThumbnailsResult:
    thumbnails: list[Thumbnail] = field(default_factory=list)
    skipped_reason: str | None = None  # e.g. "no thumbnails for text/plain"
    detail: str | None = None
    # An image's own: width, height, taken_at, camera, gps (read while its thumbnails are
    # made; empty when they were all in the store already).
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OcrInput:
    blob: BlobRef
    # A PDF's pages with a text layer are left to the text stage: only the others are OCR'd.
    skip_text_layer: bool = False


@dataclass(frozen=True)
class OcrResult:
    pages: int = 0
    characters: int = 0
    skipped_reason: str | None = None  # e.g. "no OCR for application/zip"
    detail: str | None = None  # e.g. "eng, 2 pages"


# --- Dedup and commit ---------------------------------------------------------------------


class BlobStatus(StrEnum):
    PROCESSING = "processing"
    READY = "ready"
    QUARANTINED = "quarantined"
    FAILED = "failed"
    # Its last file was deleted: its bytes and derivatives are being removed. Nothing may
    # take it over until that ends (the removal would take the newcomer's derivatives too).
    RELEASING = "releasing"
    # Its last file was deleted and its bytes removed; the next upload of them starts afresh.
    RELEASED = "released"

    @property
    def is_terminal(self) -> bool:
        return self is not BlobStatus.PROCESSING


class BlobRole(StrEnum):
    OWNER = "owner"  # this file's workflow runs the blob's stages
    DUPLICATE = "duplicate"  # another file's workflow did (or does): reuse its outcome


@dataclass(frozen=True)
class ClaimInput:
    file_id: str
    blob: BlobRef  # the verified bytes at this upload's own key
    # DEDUPLICATED at creation: there are no bytes of its own, only a usable blob will do.
    existing_only: bool = False


@dataclass(frozen=True)
class BlobState:
    """A blob as recorded: where its bytes are, how its stages went, its derivatives."""

    blob: BlobRef
    status: BlobStatus
    stages: dict[str, StageState] = field(default_factory=dict)
    thumbnails: list[Thumbnail] = field(default_factory=list)
    public_key: str | None = None


@dataclass(frozen=True)
class ClaimResult:
    role: BlobRole
    state: BlobState
    # A duplicate of bytes that no other file of this tenant holds: its outcome must not
    # show that another tenant already had them (no instant stages, no borrowed timings).
    other_tenant: bool = False


@dataclass(frozen=True)
class CommitInput:
    """Ends a file: its status, its stages, and (for the blob's owner) the blob's outcome."""

    file_id: str
    status: FileStatus
    detail: str | None
    stages: dict[str, StageState]
    blob_sha256: str | None = None
    blob_status: BlobStatus | None = None  # set by the owner only
    blob_stages: dict[str, StageState] = field(default_factory=dict)
    thumbnails: list[Thumbnail] = field(default_factory=list)
    public_key: str | None = None
    events: list[ProgressEvent] = field(default_factory=list)  # kept for replay by SSE
    # A retry of a ready file: only these stages were re-run; their outcome is recorded on
    # the blob and on every ready file that holds it, and the file stays ready.
    retried_stages: list[str] = field(default_factory=list)
    # What the stages found out about the bytes (dimensions, pages, duration, ...): the
    # blob's, replaced whole by the owner (None: left as it is).
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class PublishInput:
    blob: BlobRef
    scanned: bool = True  # False: too large to scan, served unscanned; the edge says so


@dataclass(frozen=True)
class PublishResult:
    public_key: str
    cdn_url: str


@dataclass(frozen=True)
class ReleaseInput:
    """A file was deleted: drop its reference, and the blob's bytes with the last one."""

    file_id: str


@dataclass(frozen=True)
class ReleaseResult:
    blob_released: bool
    sha256: str | None = None
    objects: list[ObjectRef] = field(default_factory=list)  # to delete from the store
    public_key: str | None = None
    # The last public file of the blob went while private ones remain: only the public
    # copy goes (public_key names it), the bytes stay.
    unpublish_only: bool = False


@dataclass(frozen=True)
class FinishReleaseInput:
    sha256: str


@dataclass(frozen=True)
class QuarantineInput:
    blob: BlobRef
    quarantine_bucket: str


@dataclass(frozen=True)
class DeleteObjectsInput:
    objects: list[ObjectRef]


@dataclass(frozen=True)
class DeleteFileInput:
    file_id: str


@dataclass(frozen=True)
class UnpublishInput:
    sha256: str


@dataclass(frozen=True)
class SealInput:
    """Moves a landed upload's object out of every client's reach before it is verified."""

    file_id: str
    upload_id: str
    bucket: str
    incoming_key: str
    sealed_key: str


@dataclass(frozen=True)
class SealAndVerifyInput:
    """A landed upload sealed, then its sealed object verified, in one activity task."""

    seal: SealInput
    verify: VerifyInput


@dataclass(frozen=True)
class SealResult:
    landed: bool  # False: nothing under either key yet (an event came before its object)


@dataclass(frozen=True)
class DiscardInput:
    """An upload that will not be processed: its object and any unfinished multipart go."""

    object: ObjectRef
    multipart_upload_id: str | None = None


# --- Outgoing webhooks --------------------------------------------------------------------


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class EnqueueWebhooksInput:
    """A file reached a terminal status: one delivery per endpoint subscribed to its event."""

    file_id: str
    status: FileStatus


@dataclass(frozen=True)
class EnqueueWebhooksResult:
    """The pending deliveries to start, and how to retry them (from the worker's settings,
    so an operator changes the policy without touching running ingest workflows)."""

    delivery_ids: list[str] = field(default_factory=list)
    task_queue: str = "webhooks"
    retry_initial_seconds: float = 5.0
    retry_max_interval_seconds: float = 600.0
    deadline_seconds: float = 72 * 3600.0


@dataclass(frozen=True)
class DeliverWebhookInput:
    """WebhookDeliveryWorkflow's input, and its deliver_webhook activity's."""

    delivery_id: str
    # Deliveries run on a queue of their own: a receiver that hangs takes no ingest slot.
    task_queue: str = "webhooks"
    retry_initial_seconds: float = 5.0
    retry_max_interval_seconds: float = 600.0
    deadline_seconds: float = 72 * 3600.0


@dataclass(frozen=True)
class DeliverWebhookResult:
    status: DeliveryStatus
    attempts: int = 0
    status_code: int | None = None
    detail: str | None = None


@dataclass(frozen=True)
class FailDeliveryInput:
    """A delivery that will not be retried any more (its deadline passed, or it is refused)."""

    delivery_id: str
    reason: str


# deliver_webhook raises this, non-retryable, when a delivery must stop (endpoint deleted,
# private address refused); anything else it raises is retried until the deadline.
WEBHOOK_REFUSED_ERROR = "WebhookRefused"
# A metadata activity found no row for its file: the API started the workflow but never
# committed the row (it died in between). Non-retryable.
FILE_MISSING_ERROR = "FileMissing"

# --- Retry (POST /v1/files/{id}/retry) ----------------------------------------------------

# The retry's own row change (made by the API in the transaction that started the run) is
# not there: the API rolled back, so this run has nothing to do.
RETRY_ABANDONED_ERROR = "RetryAbandoned"


@dataclass(frozen=True)
class RetryClaimInput:
    file_id: str
    sha256: str
    previous_status: FileStatus
    stages: list[str]


# --- Reprocess (conveyor reprocess) -------------------------------------------------------

REPROCESS_STAGES = ("thumbnails", "ocr")


@dataclass(frozen=True)
class ReprocessFilter:
    """Which ready blobs a reprocess covers; every field narrows, None matches all.

    `content_type` is the blob's sniffed type, exact (`image/png`) or a prefix ending in `*`
    (`image/*`); `tenant` is a tenant's name (blobs one of its ready files holds);
    `created_after`/`created_before` are ISO 8601 instants compared with the blob's first
    upload (inclusive, exclusive).
    """

    content_type: str | None = None
    tenant: str | None = None
    created_after: str | None = None
    created_before: str | None = None


@dataclass(frozen=True)
class ReprocessFailure:
    sha256: str
    reason: str


@dataclass
class ReprocessProgress:
    """The `progress` query's answer and the workflow's result; carried across
    continue-as-new. Every listed blob is `seen`; each seen blob ends done, failed, skipped
    or quarantined, so `seen - done - failed - skipped - quarantined` are in flight."""

    stage: str
    total: int | None = None  # matching blobs when the run began (an estimate for a bar)
    seen: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    quarantined: int = 0  # a gate's re-run (the scan's) refused the bytes: files taken down
    cursor: str | None = None  # sha256 of the last blob of the last finished page
    runs: int = 1  # this run and the ones it continued as new from
    finished: bool = False
    failures: list[ReprocessFailure] = field(default_factory=list)  # the first few


@dataclass(frozen=True)
class ReprocessInput:
    stage: str  # one of REPROCESS_STAGES
    filter: ReprocessFilter = field(default_factory=ReprocessFilter)
    max_concurrency: int = 4
    page_size: int = 100
    # Continue as new after this many pages, so the history stays small.
    pages_per_run: int = 4
    thumbnail_sizes: list[int] = field(default_factory=lambda: [256, 1024])
    media_task_queue: str = "media"
    # Carried across continue-as-new: where to go on from, and the counters so far.
    progress: ReprocessProgress | None = None


@dataclass(frozen=True)
class QuarantineReadyInput:
    """A ready blob that a gate's re-run refuses (a re-scan with newer signatures)."""

    sha256: str
    stage: str
    state: StageState  # the gate's outcome, its verdict the detail


@dataclass(frozen=True)
class QuarantinedBlob:
    """What a ready blob's quarantine left the workflow to do."""

    quarantined: bool = False  # False: the blob was no longer ready (released meanwhile)
    quarantine_bucket: str = ""
    public: bool = False  # a public file held it: its public copy comes down
    files: list[str] = field(default_factory=list)  # the files taken down
    webhooks: EnqueueWebhooksResult = field(default_factory=lambda: EnqueueWebhooksResult())


@dataclass(frozen=True)
class ReprocessBatchInput:
    filter: ReprocessFilter
    after_sha256: str | None
    limit: int


@dataclass(frozen=True)
class ReprocessBatch:
    blobs: list[BlobRef] = field(default_factory=list)


@dataclass(frozen=True)
class RecordStageInput:
    """A reprocessed blob's new stage outcome (and, for thumbnails, the thumbnails made)."""

    sha256: str
    stage: str
    state: StageState
    thumbnails: list[Thumbnail] | None = None
    metadata: dict[str, Any] | None = None  # merged into the blob's


@dataclass(frozen=True)
class SweepInput:
    """One sweep. `grace_seconds` None: the workers' `stray_grace_seconds`."""

    grace_seconds: int | None = None


@dataclass(frozen=True)
class SweepBatchInput:
    grace_seconds: int | None = None
    limit: int = 1000  # at most this many removals (or deletions taken up) per kind and run


@dataclass(frozen=True)
class SweepCount:
    examined: int = 0
    removed: int = 0


@dataclass(frozen=True)
class UnfinishedDeletions:
    file_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SweepResult:
    strays_removed: int = 0
    multipart_aborted: int = 0
    deletions_restarted: int = 0

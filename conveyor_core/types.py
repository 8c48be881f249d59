"""Domain types shared by the API, workflows and activities.

Workflow and activity inputs and outputs are single dataclasses, so fields can be added
(with defaults) without breaking running workflows. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


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


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    detail: str | None
    sha256: str | None = None
    size: int | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class CommitReadyInput:
    file_id: str
    bucket: str
    object_key: str
    sha256: str
    size: int
    content_type: str
    stages: dict[str, StageState]


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


@dataclass(frozen=True)
class OcrInput:
    blob: BlobRef


@dataclass(frozen=True)
class OcrResult:
    pages: int = 0
    characters: int = 0
    skipped_reason: str | None = None  # e.g. "no OCR for application/zip"
    detail: str | None = None  # e.g. "eng, 2 pages"

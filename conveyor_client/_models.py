"""Typed results: the API's JSON as frozen dataclasses (unknown fields are kept in `raw`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL_STATUSES = frozenset({"ready", "quarantined", "failed", "expired", "cancelled", "deleted"})
"""File statuses after which nothing changes any more."""


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


@dataclass(frozen=True)
class Stage:
    """One processing stage of a file (scan, thumbnails, ocr, ...).

    Attributes:
        status: pending, running, succeeded, failed or skipped.
        detail: Why, e.g. "clean", or the reason a stage failed or was skipped.
        duration_ms: How long the stage ran.
    """

    status: str
    detail: str | None = None
    duration_ms: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stage:
        """Builds a stage from its JSON object."""
        return cls(
            status=str(data["status"]),
            detail=data.get("detail"),
            duration_ms=data.get("duration_ms"),
        )


@dataclass(frozen=True)
class FileEvent:
    """One transition of a file's progress, from `Client.events`.

    Attributes:
        seq: Its number: 1, 2, ... per file (resume after it with `after=seq`).
        type: "status" (the file's) or "stage" (one stage's).
        stage: For "stage" events: verify, scan, thumbnails or ocr.
        status: The file's new status, or the stage's (running, succeeded, failed, skipped).
        detail: Why, e.g. "clean", or a failure's reason.
    """

    seq: int
    type: str
    status: str
    stage: str | None = None
    detail: str | None = None
    at: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        """The file's last event: its terminal status."""
        return self.type == "status" and self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileEvent:
        """Builds an event from an SSE `data` object."""
        return cls(
            seq=int(data["seq"]),
            type=str(data["type"]),
            status=str(data["status"]),
            stage=data.get("stage"),
            detail=data.get("detail"),
            at=_time(data.get("at")),
        )


@dataclass(frozen=True)
class Thumbnail:
    """A thumbnail of a ready image or PDF; `url` is short-lived for private files."""

    size: int
    width: int
    height: int
    url: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Thumbnail:
        """Builds a thumbnail from its JSON object."""
        return cls(
            size=int(data["size"]),
            width=int(data["width"]),
            height=int(data["height"]),
            url=str(data["url"]),
        )


@dataclass(frozen=True)
class File:
    """A file as `GET /v1/files/{id}` shows it.

    Attributes:
        id: The file id.
        status: awaiting_upload, processing, ready, quarantined, failed, expired, cancelled
            or deleted.
        status_detail: Why a file failed, for example.
        stages: Per-stage status by stage name.
        raw: The JSON object as the API sent it, including fields newer than this client.
    """

    id: str
    filename: str
    size: int
    content_type: str
    sha256: str | None
    visibility: str
    status: str
    status_detail: str | None
    stages: dict[str, Stage]
    thumbnails: list[Thumbnail]
    cdn_url: str | None
    created_at: datetime | None
    ready_at: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        """True once the file's status can no longer change."""
        return self.status in TERMINAL_STATUSES

    @property
    def is_ready(self) -> bool:
        """True when the file is ready to download."""
        return self.status == "ready"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> File:
        """Builds a file from its JSON object."""
        return cls(
            id=str(data["id"]),
            filename=str(data["filename"]),
            size=int(data["size"]),
            content_type=str(data["content_type"]),
            sha256=data.get("sha256"),
            visibility=str(data.get("visibility", "private")),
            status=str(data["status"]),
            status_detail=data.get("status_detail"),
            stages={k: Stage.from_json(v) for k, v in (data.get("stages") or {}).items()},
            thumbnails=[Thumbnail.from_json(t) for t in data.get("thumbnails") or []],
            cdn_url=data.get("cdn_url"),
            created_at=_time(data.get("created_at")),
            ready_at=_time(data.get("ready_at")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class UploadPart:
    """A part of a multipart upload that the store already holds."""

    part_number: int
    size: int
    etag: str


@dataclass(frozen=True)
class Upload:
    """An upload as `GET /v1/uploads/{id}` shows it.

    Attributes:
        method: PUT or MULTIPART.
        status: The status of the file the upload belongs to.
        parts: For multipart uploads, the parts the store already holds.
        part_checksum: For multipart uploads, the checksum each part must carry
            (``crc64nvme`` or ``sha256``), when one was declared.
    """

    upload_id: str
    file_id: str
    method: str
    status: str
    expires_at: datetime | None
    part_size: int | None = None
    part_count: int | None = None
    parts: list[UploadPart] = field(default_factory=list)
    part_checksum: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Upload:
        """Builds an upload from its JSON object."""
        return cls(
            upload_id=str(data["upload_id"]),
            file_id=str(data["file_id"]),
            method=str(data["method"]),
            status=str(data["status"]),
            expires_at=_time(data.get("expires_at")),
            part_size=data.get("part_size"),
            part_count=data.get("part_count"),
            parts=[
                UploadPart(int(p["part_number"]), int(p.get("size") or 0), str(p["etag"]))
                for p in data.get("parts") or []
            ],
            part_checksum=data.get("part_checksum"),
        )


@dataclass(frozen=True)
class UploadToken:
    """A short-lived token for a browser to upload with, in place of the API key.

    Attributes:
        token: The token itself, shown only once: give it to the page (for Conveyor's own
            page, ``<api>/ui#token=<token>``), or to Uppy as
            ``companionEndpoint: <api>/v1/uppy/<token>``.
    """

    id: str
    token: str
    expires_at: datetime | None
    max_file_size: int | None
    max_files: int | None
    content_types: list[str] | None
    allow_public: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UploadToken:
        """Builds a token from its JSON object."""
        return cls(
            id=str(data["id"]),
            token=str(data["token"]),
            expires_at=_time(data.get("expires_at")),
            max_file_size=data.get("max_file_size"),
            max_files=data.get("max_files"),
            content_types=data.get("content_types"),
            allow_public=bool(data.get("allow_public")),
        )


@dataclass(frozen=True)
class UploadProgress:
    """Where an upload stands.

    Attributes:
        upload_id: The upload (None before it was created, or for a deduplicated one).
        file_id: The file it creates (None before it was created).
        bytes_done: Bytes the store holds (including parts held before a resume).
        bytes_total: The file's size.
        parts_done: Multipart parts the store holds (0 for a single PUT).
        part_count: The upload's number of parts (1 for a single PUT).
        parts_skipped: Parts found already held when the upload resumed; not sent again.
    """

    upload_id: str | None
    file_id: str | None
    bytes_done: int
    bytes_total: int
    parts_done: int = 0
    part_count: int = 1
    parts_skipped: int = 0

"""Request and response bodies of the v1 REST contract (DESIGN.md §4)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from conveyor_core.objectstore import Checksum, ChecksumAlgorithm
from conveyor_core.types import FileStatus, StageStatus, Visibility

# type/subtype per RFC 6838 (parameters such as charset allowed), no wildcards. ASCII only
# (under IGNORECASE a Unicode [a-z] also takes the Kelvin sign and the long s), matched
# whole (`$` would allow a trailing newline), quoted values printable.
_MEDIA_TYPE = re.compile(
    r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
    r"([ \t]*;[ \t]*[a-z0-9!#$&^_.+-]+=(\"[\x20\x21\x23-\x5b\x5d-\x7e]*\"|[a-z0-9!#$&^_.+-]+))*",
    re.IGNORECASE | re.ASCII,
)
# What a file name must not hold: C0 and C1 controls and DEL; the bidirectional controls
# that make a name read otherwise than it is ("invoice\u202efdp.exe" shows as
# "invoiceexe.pdf"): LRM, RLM, ALM, the embeddings and overrides, the isolates; and lone
# surrogates, which no encoding can store.
_UNSAFE_IN_NAME = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)

MIB = 1024 * 1024
# S3's bounds: parts of 5 MiB to 5 GiB, at most 10,000 of them.
MIN_PART_SIZE, MAX_PART_SIZE, MAX_PART_COUNT = 5 * MIB, 5 * 1024 * MIB, 10_000

PartNumber = Annotated[int, Field(ge=1, le=MAX_PART_COUNT)]
Base64Sha256 = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{43}=$")]
Base64Crc64 = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{11}=$")]


class _Checksummed(BaseModel):
    """A part's checksum: base64 SHA-256 or base64 CRC64NVME (S3's encodings)."""

    sha256: Base64Sha256 | None = None
    crc64nvme: Base64Crc64 | None = None

    @model_validator(mode="after")
    def _one_checksum(self) -> _Checksummed:
        if self.sha256 is not None and self.crc64nvme is not None:
            raise ValueError("send one checksum per part: sha256 or crc64nvme")
        return self

    def checksum(self) -> Checksum | None:
        if self.sha256 is not None:
            return Checksum("sha256", self.sha256)
        if self.crc64nvme is not None:
            return Checksum("crc64nvme", self.crc64nvme)
        return None


class PartChecksum(_Checksummed):
    model_config = ConfigDict(extra="forbid")

    part_number: PartNumber

    @model_validator(mode="after")
    def _has_checksum(self) -> PartChecksum:
        if self.sha256 is None and self.crc64nvme is None:
            raise ValueError("each part needs its sha256 or crc64nvme")
        return self


def _one_algorithm(parts: list[PartChecksum] | None) -> ChecksumAlgorithm | None:
    """The algorithm all `parts` use; raises when they mix them."""
    algorithms = {c.algorithm for p in parts or [] if (c := p.checksum()) is not None}
    if len(algorithms) > 1:
        raise ValueError("all parts of an upload use the same checksum algorithm")
    return algorithms.pop() if algorithms else None


class PartUrl(BaseModel):
    part_number: int
    url: str
    headers: dict[str, str]


class UploadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: Annotated[str, Field(min_length=1, max_length=255)]
    size: Annotated[int, Field(ge=0)]
    content_type: Annotated[str, Field(min_length=3, max_length=255)]
    sha256: Annotated[str | None, Field(pattern=r"^[0-9a-fA-F]{64}$")] = None
    visibility: Visibility = Visibility.PRIVATE
    # MULTIPART only (ignored otherwise): the part size the client chose, the checksum
    # every part will carry (declared to the store; the API then signs no part without
    # it), and the first parts' checksums, whose URLs then come in the answer, saving a
    # `parts` call.
    part_size: Annotated[int | None, Field(ge=MIN_PART_SIZE, le=MAX_PART_SIZE)] = None
    part_checksum: ChecksumAlgorithm | None = None
    parts: Annotated[list[PartChecksum] | None, Field(min_length=1, max_length=100)] = None

    @field_validator("filename")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if found := _UNSAFE_IN_NAME.search(value):
            raise PydanticCustomError(
                "invalid_filename",
                "must not contain control or bidirectional characters (found {char})",
                {"char": f"U+{ord(found.group()):04X}"},
            )
        if value in (".", "..") or "/" in value or "\\" in value:
            raise PydanticCustomError("invalid_filename", "must be a file name, not a path")
        return value

    @field_validator("content_type")
    @classmethod
    def _media_type(cls, value: str) -> str:
        if not _MEDIA_TYPE.fullmatch(value):
            raise PydanticCustomError(
                "invalid_content_type",
                "must be a media type such as image/jpeg, in printable ASCII",
            )
        return value

    @field_validator("sha256")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.lower() if value is not None else None

    @model_validator(mode="after")
    def _parts_fit(self) -> UploadCreate:
        if self.part_size is not None and -(-self.size // self.part_size) > MAX_PART_COUNT:
            raise ValueError(f"part_size is too small: a file needs at most {MAX_PART_COUNT} parts")
        if self.parts is not None and len({p.part_number for p in self.parts}) < len(self.parts):
            raise ValueError("parts must name each part number once")
        algorithm = _one_algorithm(self.parts)
        if self.part_checksum is None:
            self.part_checksum = algorithm
        elif algorithm not in (None, self.part_checksum):
            raise ValueError(f"part_checksum is {self.part_checksum}; the parts carry {algorithm}")
        return self


class UploadCreated(BaseModel):
    """`PUT`: send the bytes to `url` with exactly `headers` before `expires_at`.
    `MULTIPART`: send `part_count` parts of `part_size` bytes (the last may be shorter) to
    URLs from `parts` or `POST /v1/uploads/{upload_id}/parts`, then complete before
    `expires_at`.
    `DEDUPLICATED`: the tenant already holds these bytes; nothing to send."""

    upload_id: uuid.UUID | None
    file_id: uuid.UUID
    # POST: a browser widget's form upload (`/v1/uppy`), never a create's answer here.
    method: Literal["PUT", "MULTIPART", "DEDUPLICATED", "POST"]
    url: str | None = None
    headers: dict[str, str] | None = None
    part_size: int | None = None
    part_count: int | None = None
    expires_at: datetime | None = None
    # MULTIPART: URLs of the parts whose checksums were sent, usable until parts_expire_at.
    parts: list[PartUrl] = []
    parts_expire_at: datetime | None = None
    # Set only when a create replayed by its Idempotency-Key finds the upload no longer
    # taking bytes (they landed, or it ended): then nothing is signed.
    status: str | None = None


class PartsRequest(BaseModel):
    """Either `part_numbers`, or `parts` with each part's base64 SHA-256 or CRC64NVME for
    the store to verify; at most 100 parts per request."""

    model_config = ConfigDict(extra="forbid")

    part_numbers: Annotated[list[PartNumber] | None, Field(min_length=1, max_length=100)] = None
    parts: Annotated[list[PartChecksum] | None, Field(min_length=1, max_length=100)] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PartsRequest:
        if (self.part_numbers is None) == (self.parts is None):
            raise ValueError("send either part_numbers or parts")
        _one_algorithm(self.parts)
        return self

    def checksums(self) -> dict[int, Checksum | None]:
        if self.parts is not None:
            return {p.part_number: p.checksum() for p in self.parts}
        return dict.fromkeys(self.part_numbers or [])


class PartsPresigned(BaseModel):
    parts: list[PartUrl]
    expires_at: datetime


class CompletedPart(_Checksummed):
    model_config = ConfigDict(extra="forbid")

    part_number: PartNumber
    etag: Annotated[str, Field(min_length=1, max_length=128)]


class CompleteRequest(BaseModel):
    """The parts in the store, and optionally the whole file's CRC64NVME: the store then
    checks the object it assembles (an upload made with `part_checksum: crc64nvme`)."""

    model_config = ConfigDict(extra="forbid")

    parts: Annotated[list[CompletedPart], Field(min_length=1, max_length=10_000)]
    crc64nvme: Base64Crc64 | None = None


class HeldPart(BaseModel):
    part_number: int
    size: int
    etag: str


class StagePublic(BaseModel):
    status: StageStatus
    detail: str | None = None
    duration_ms: int | None = None


class ThumbnailPublic(BaseModel):
    size: int
    width: int
    height: int
    url: str


class FilePublic(BaseModel):
    id: uuid.UUID
    filename: str
    size: int
    content_type: str
    sha256: str | None
    visibility: Visibility
    status: FileStatus
    status_detail: str | None = None
    stages: dict[str, StagePublic]
    thumbnails: list[ThumbnailPublic] = []
    # What the stages found out about the bytes, once ready: width/height, pages, title,
    # author, duration, language, ... (keys depend on the type and the installed stages).
    metadata: dict[str, Any] = {}
    # Once ready: false when the bytes were too large to scan and served unscanned (the
    # tenant's scan_oversize), and downloads carry X-Conveyor-Scanned: false.
    scanned: bool | None = None
    cdn_url: str | None = None
    workflow_id: str
    created_at: datetime
    ready_at: datetime | None


class UploadState(BaseModel):
    upload_id: uuid.UUID
    file_id: uuid.UUID
    status: str
    # complete: the file as it stands once the store holds its bytes, so a client need not
    # GET it again (the SDK's upload returns it).
    file: FilePublic | None = None


class FileList(BaseModel):
    files: list[FilePublic]
    next_cursor: str | None


class UploadPublic(BaseModel):
    upload_id: uuid.UUID
    file_id: uuid.UUID
    method: str
    status: FileStatus
    expires_at: datetime
    part_size: int | None = None
    part_count: int | None = None
    part_checksum: ChecksumAlgorithm | None = None  # MULTIPART: what each part must carry
    parts: list[HeldPart] = []  # MULTIPART: the parts the store already holds (for resume)


class HealthPublic(BaseModel):
    status: Literal["ok"] = "ok"


class ReadinessPublic(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]


class FileEventPublic(BaseModel):
    """One Server-Sent Event of `GET /v1/files/{id}/events` (its `data`)."""

    seq: int
    file_id: uuid.UUID
    type: Literal["status", "stage"]
    # For type "stage": verify, or an installed stage (scan, thumbnails, text, ocr, ...).
    stage: str | None = None
    status: str  # a file status, or a stage status (running, succeeded, failed, skipped)
    detail: str | None = None
    at: datetime | None = None

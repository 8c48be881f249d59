"""The routes Uppy's `@uppy/aws-s3` plugin calls, so a page's Uppy uploads to Conveyor as it is.

Point its `companionEndpoint` at `<api>/v1/uppy/<upload token>`: the plugin calls
`<endpoint>/s3/...` with no headers of its own, so the token stands in the address (and
only an upload token may: never an API key). Every route makes or drives an upload of the
same model as `/v1/uploads` (the token's limits, the tenant's quota, the ingest workflow);
only the shapes are Uppy's. A widget says no file size: an upload takes up to the token's
largest file, and verify checks the bytes against that.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AutocommitSessionDep, StateDep, Tenancy, authenticate
from api.errors import (
    BadRequest,
    Conflict,
    ErrorCode,
    PayloadTooLarge,
    Unauthorized,
    responses,
)
from api.routes import uploads
from api.schemas import UploadCreated
from conveyor_core.db.models import Upload
from conveyor_core.keys import TOKEN_PREFIX
from conveyor_core.multipart_calls import StoreCallError, UploadedPart
from conveyor_core.objectstore import presign_post
from conveyor_core.types import FileStatus, incoming_key

MAX_PARTS = 10_000


async def _uploader(token: str, state: StateDep) -> Tenancy:
    if not token.startswith(TOKEN_PREFIX):
        raise Unauthorized(
            "Only an upload token may stand in an Uppy endpoint address, never an API key.",
            code=ErrorCode.INVALID_API_KEY,
        )
    return await authenticate(state, f"Bearer {token}")


UppyTenancy = Annotated[Tenancy, Depends(_uploader)]
router = APIRouter(
    prefix="/v1/uppy/{token}/s3",
    tags=["uppy"],
    responses=responses(
        ErrorCode.INVALID_API_KEY,
        ErrorCode.UPLOAD_TOKEN_EXPIRED,
        ErrorCode.RATE_LIMITED,
        ErrorCode.DEPENDENCY_UNAVAILABLE,
    ),
)


# What creating an upload may answer, and what driving one may.
DECLARE_ERRORS = responses(
    ErrorCode.INVALID_FILENAME,
    ErrorCode.INVALID_CONTENT_TYPE,
    ErrorCode.FILE_QUOTA_EXCEEDED,
    ErrorCode.STORAGE_QUOTA_EXCEEDED,
    ErrorCode.CONTENT_TYPE_NOT_ALLOWED,
    ErrorCode.UPLOAD_TOKEN_USED_UP,
)
DRIVE_ERRORS = responses(
    ErrorCode.UPLOAD_NOT_FOUND, ErrorCode.UPLOAD_NOT_ACTIVE, ErrorCode.INVALID_PARTS
)


class MultipartCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    filename: Annotated[str, Field(min_length=1, max_length=255)]
    type: Annotated[str, Field(max_length=255)] = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


class CompletedUppyPart(BaseModel):
    PartNumber: Annotated[int, Field(ge=1, le=MAX_PARTS)]
    ETag: Annotated[str, Field(min_length=1, max_length=128)]


class MultipartComplete(BaseModel):
    parts: Annotated[list[CompletedUppyPart], Field(min_length=1, max_length=MAX_PARTS)]


def _content_type(declared: str) -> str:
    return declared or "application/octet-stream"


@router.get(
    "/params",
    responses=DECLARE_ERRORS,
)
async def form_upload(
    state: StateDep,
    tenancy: UppyTenancy,
    filename: Annotated[str, Query(min_length=1, max_length=255)],
    type: Annotated[str, Query(max_length=255)] = "",
) -> dict[str, Any]:
    """A small file: an upload, and the S3 POST policy the browser sends it with (bound to
    its key and type, at most the token's largest file)."""
    content_type = _content_type(type)
    created = await uploads.declare_for_browser(state, tenancy, filename, content_type, "POST")
    assert created.upload_id is not None
    settings = state.settings
    upload_key = incoming_key(str(tenancy.tenant_id), str(created.upload_id))
    post = await asyncio.to_thread(
        presign_post,
        state.s3_presign,
        bucket=settings.bucket,
        key=upload_key,
        max_size=uploads.browser_limit(state, tenancy),
        content_type=content_type,
        expires_in=settings.upload_url_ttl_seconds,
    )
    return {"method": "POST", "url": post.url, "fields": post.fields, **_ids(created)}


@router.post(
    "/multipart",
    responses=DECLARE_ERRORS,
)
async def create_multipart(
    body: MultipartCreate, state: StateDep, tenancy: UppyTenancy
) -> dict[str, Any]:
    """A large file: an upload whose parts the browser sends, each signed on demand. Its
    `uploadId` is the upload's id (the store's own never leaves the API)."""
    created = await uploads.declare_for_browser(
        state, tenancy, body.filename, _content_type(body.type), "MULTIPART"
    )
    assert created.upload_id is not None
    upload_key = incoming_key(str(tenancy.tenant_id), str(created.upload_id))
    return {"key": upload_key, "uploadId": str(created.upload_id), **_ids(created)}


def _ids(created: UploadCreated) -> dict[str, str]:
    """Extra fields Uppy ignores, for a page that follows the file."""
    return {"fileId": str(created.file_id), "conveyorUploadId": str(created.upload_id)}


def _check_key(upload: Upload, key: str | None) -> None:
    if key is not None and key != upload.object_key:
        raise BadRequest("The key does not belong to this upload.", code=ErrorCode.INVALID_PARTS)


@router.get(
    "/multipart/{upload_id}/{part_number}",
    responses=DRIVE_ERRORS,
)
async def sign_part(
    upload_id: uuid.UUID,
    part_number: Annotated[int, Path(ge=1, le=MAX_PARTS)],
    state: StateDep,
    session: AutocommitSessionDep,
    tenancy: UppyTenancy,
    key: str | None = None,
) -> dict[str, str]:
    upload, file = await uploads.browser_multipart(session, upload_id, tenancy)
    _check_key(upload, key)
    uploads.check_active(upload, file)
    url = await asyncio.to_thread(
        state.s3_presign.generate_presigned_url,
        "upload_part",
        Params={
            "Bucket": upload.bucket,
            "Key": upload.object_key,
            "UploadId": upload.multipart_upload_id or "",
            "PartNumber": part_number,
        },
        ExpiresIn=state.settings.upload_url_ttl_seconds,
        HttpMethod="PUT",
    )
    return {"url": url}


@router.get(
    "/multipart/{upload_id}",
    responses=DRIVE_ERRORS,
)
async def list_parts(
    upload_id: uuid.UUID,
    state: StateDep,
    session: AutocommitSessionDep,
    tenancy: UppyTenancy,
    key: str | None = None,
) -> list[dict[str, Any]]:
    """The parts the store holds: what a widget resumes from, sending only the others."""
    upload, file = await uploads.browser_multipart(session, upload_id, tenancy)
    _check_key(upload, key)
    held = await uploads.held_parts(state, upload) if uploads.takes_bytes(upload, file) else None
    if held is None:
        uploads.check_active(upload, file)
        raise Conflict("This upload is no longer open.", code=ErrorCode.UPLOAD_NOT_ACTIVE)
    return [{"PartNumber": p.part_number, "ETag": p.etag, "Size": p.size} for p in held]


@router.post(
    "/multipart/{upload_id}/complete",
    responses=responses(
        ErrorCode.UPLOAD_NOT_FOUND,
        ErrorCode.UPLOAD_NOT_ACTIVE,
        ErrorCode.INVALID_PARTS,
        ErrorCode.MISSING_PARTS,
        ErrorCode.ETAG_MISMATCH,
        ErrorCode.FILE_TOO_LARGE,
    ),
)
async def complete_multipart(
    upload_id: uuid.UUID,
    body: MultipartComplete,
    state: StateDep,
    session: AutocommitSessionDep,
    tenancy: UppyTenancy,
    key: str | None = None,
) -> dict[str, Any]:
    """Completes the upload once the parts named are the store's, and no more than the
    token's largest file in all; repeated once the bytes landed, it answers the same."""
    upload, file = await uploads.browser_multipart(session, upload_id, tenancy)
    _check_key(upload, key)
    answer = {
        "location": f"{state.settings.api_url}/v1/files/{file.id}",
        "bucket": upload.bucket,
        "key": upload.object_key,
        "fileId": str(file.id),
    }
    if file.status != FileStatus.AWAITING_UPLOAD.value and upload.sealed_at is not None:
        return answer
    uploads.check_active(upload, file)
    numbers = [p.PartNumber for p in body.parts]
    if numbers != sorted(numbers) or any(n > 1 for n in Counter(numbers).values()):
        raise BadRequest(
            "Parts must be listed once each, in ascending order.", code=ErrorCode.INVALID_PARTS
        )
    held = {p.part_number: p for p in await uploads.held_parts(state, upload) or []}
    missing = [n for n in numbers if n not in held]
    if missing:
        raise BadRequest(
            f"The store holds no part {', '.join(map(str, missing[:10]))}: upload it first.",
            code=ErrorCode.MISSING_PARTS,
        )
    differ = [p.PartNumber for p in body.parts if p.ETag.strip('"') != held[p.PartNumber].etag]
    if differ:
        raise BadRequest(
            f"Part {', '.join(map(str, differ[:10]))} has another ETag in the store.",
            code=ErrorCode.ETAG_MISMATCH,
        )
    total = sum(held[n].size for n in numbers)
    if total > file.declared_size:
        raise PayloadTooLarge(
            f"These parts hold {total} bytes; this upload takes at most {file.declared_size}."
        )
    try:
        await state.multipart_calls.complete(
            bucket=upload.bucket,
            key=upload.object_key,
            upload_id=upload.multipart_upload_id or "",
            parts=[UploadedPart(n, held[n].etag, None) for n in numbers],
            whole=None,
        )
    except StoreCallError as e:
        raise uploads.completion_refused(e) or BadRequest(
            f"The store refused these parts ({e.code}): every part but the last must be "
            "at least 5 MiB.",
            code=ErrorCode.INVALID_PARTS,
        ) from e
    return answer


@router.delete(
    "/multipart/{upload_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=DRIVE_ERRORS,
)
async def abort_multipart(
    upload_id: uuid.UUID,
    state: StateDep,
    session: AutocommitSessionDep,
    tenancy: UppyTenancy,
    key: str | None = None,
) -> Response:
    """Aborts: the workflow drops the parts and the file ends `cancelled`."""
    upload, file = await uploads.browser_multipart(session, upload_id, tenancy)
    _check_key(upload, key)
    await uploads.request_cancel(state, file)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

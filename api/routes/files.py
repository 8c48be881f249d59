"""Files: metadata and status, content, OCR text, search, retry, delete."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import uuid
from asyncio import FIRST_COMPLETED
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from botocore.exceptions import ClientError
from fastapi import APIRouter, Query, Response, status
from fastapi.responses import PlainTextResponse, RedirectResponse
from pydantic import TypeAdapter
from sqlalchemy import exists, func, literal, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import WorkflowFailureError, WorkflowQueryRejectedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api import tokens
from api.deps import AppState, SessionDep, StateDep, Tenancy, TenancyDep, UploaderDep
from api.errors import (
    AUTHENTICATED,
    BadRequest,
    Conflict,
    ErrorCode,
    Forbidden,
    Gone,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    responses,
)
from api.limits import check_quota
from api.schemas import FileList, FilePublic, StagePublic, ThumbnailPublic
from conveyor_core.db.models import Blob, BlobText, File, FileEvent, Upload
from conveyor_core.types import (
    BlobRef,
    BlobStatus,
    DeleteFileInput,
    FileStatus,
    IngestInput,
    IngestProgress,
    RetryRequest,
    StageState,
    StageStatus,
    Visibility,
)
from workflows import search_attributes
from workflows.delete import DeleteFileWorkflow, delete_workflow_id
from workflows.ingest import PROCESSING_STAGES, IngestWorkflow


class InvalidCursor(BadRequest):
    code = ErrorCode.INVALID_CURSOR


log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/files", tags=["files"], responses=AUTHENTICATED)
MAX_PAGE = 100
# Postgres text cannot hold NUL: such a query is refused (422) before it reaches it.
NO_NUL = r"^[^\x00]*$"
# A ready file's stages that can fail without failing the file, and so be retried alone.


async def owned_file(session: AsyncSession, file_id: uuid.UUID, tenancy: Tenancy) -> File:
    """The tenant's file; with an upload token, only one that token created."""
    file = await session.get(File, file_id)
    if file is None or file.tenant_id != tenancy.tenant_id or not tokens.may_read(tenancy, file):
        raise NotFound("No such file.", code=ErrorCode.FILE_NOT_FOUND)
    if file.status == FileStatus.DELETED.value:
        raise Gone("This file was deleted.", code=ErrorCode.FILE_DELETED)
    return file


# The most a GET may hold its answer for a file to finish (?wait=).
MAX_WAIT_SECONDS = 60


@router.get(
    "/{file_id}",
    response_model=FilePublic,
    responses=responses(ErrorCode.FILE_NOT_FOUND, ErrorCode.FILE_DELETED),
)
async def get_file(
    file_id: uuid.UUID,
    state: StateDep,
    session: SessionDep,
    tenancy: UploaderDep,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="Seconds to hold the answer while the file is not finished: it comes "
            "as soon as the file ends (ready, failed, ...) or when they are up, whichever is "
            "first. 0 answers at once.",
        ),
    ] = 0,
) -> FilePublic:
    file = await owned_file(session, file_id, tenancy)
    if wait > 0 and not FileStatus(file.status).is_terminal:
        workflow_id = file.workflow_id
        await session.rollback()  # no database connection is held while waiting
        token_id = tenancy.token.id if tenancy.token else None
        # A tenant holding its most waiting answers gets this one at once.
        with contextlib.suppress(TooManyRequests):
            with state.wait_slots.hold(tenancy.tenant_id, token_id):
                await _wait_for_outcome(state, workflow_id, wait)
        await session.refresh(file)
    return await file_public(state, session, file)


@router.get(
    "/{file_id}/content",
    status_code=status.HTTP_307_TEMPORARY_REDIRECT,
    response_class=RedirectResponse,
    responses=responses(
        ErrorCode.FILE_NOT_FOUND,
        ErrorCode.FILE_QUARANTINED,
        ErrorCode.FILE_NOT_READY,
        ErrorCode.FILE_DELETED,
    ),
)
async def get_content(
    file_id: uuid.UUID, state: StateDep, session: SessionDep, tenancy: UploaderDep
) -> RedirectResponse:
    """Redirects to the bytes: the CDN URL for public files, a short-lived pre-signed GET
    for private ones."""
    file = await owned_file(session, file_id, tenancy)
    if file.status == FileStatus.QUARANTINED.value:
        raise Forbidden(
            "This file is quarantined: its bytes are never served.", code=ErrorCode.FILE_QUARANTINED
        )
    blob = await session.get(Blob, file.sha256) if file.sha256 else None
    if file.status != FileStatus.READY.value or blob is None:
        raise Conflict(f"This file is {file.status}, not ready.", code=ErrorCode.FILE_NOT_READY)
    # Bytes too large to scan, served because the tenant chose so: every download says it.
    headers = {SCANNED_HEADER: "false"} if is_unscanned(file.stages) else None
    if file.visibility == Visibility.PUBLIC.value and blob.public_key:
        return RedirectResponse(_cdn_url(state, blob.public_key), status_code=307, headers=headers)
    url = await asyncio.to_thread(
        state.s3_presign.generate_presigned_url,
        "get_object",
        Params={
            "Bucket": blob.bucket,
            "Key": blob.object_key,
            "ResponseContentDisposition": content_disposition(file.filename),
            "ResponseContentType": file.content_type or blob.content_type,
        },
        ExpiresIn=state.settings.download_url_ttl_seconds,
    )
    return RedirectResponse(url, status_code=307, headers=headers)


SCANNED_HEADER = "X-Conveyor-Scanned"


def is_unscanned(stages: dict[str, Any]) -> bool:
    """A ready file's scan was skipped only for bytes too large to scan, served anyway."""
    return (stages.get("scan") or {}).get("status") == StageStatus.SKIPPED.value


@router.get(
    "/{file_id}/text",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {}}},
        **responses(ErrorCode.FILE_NOT_FOUND, ErrorCode.TEXT_NOT_AVAILABLE, ErrorCode.FILE_DELETED),
    },
)
async def get_text(
    file_id: uuid.UUID, session: SessionDep, tenancy: UploaderDep
) -> PlainTextResponse:
    file = await owned_file(session, file_id, tenancy)
    texts = (
        (
            await session.execute(
                select(BlobText.text)
                .where(BlobText.sha256 == file.sha256)
                .order_by(BlobText.source.desc())  # the document's own text, then OCR's
            )
        )
        .scalars()
        .all()
        if file.sha256
        else []
    )
    if not texts or file.status != FileStatus.READY.value:
        why = _no_text_reason(file)
        raise NotFound(f"This file has no text ({why}).", code=ErrorCode.TEXT_NOT_AVAILABLE)
    return PlainTextResponse("\n\f\n".join(t for t in texts if t))


def _no_text_reason(file: File) -> str:
    """The text stages' own reasons (e.g. "no OCR for application/zip"), or the status."""
    if file.status != FileStatus.READY.value:
        return f"the file is {file.status}"
    stages = [file.stages.get(name) or {} for name in ("text", "ocr")]
    reasons = [stage.get("detail") for stage in stages if stage.get("detail")]
    return "; ".join(str(r) for r in reasons) or "no stage found any"


@router.get("", response_model=FileList, responses=responses(ErrorCode.INVALID_CURSOR))
async def list_files(
    state: StateDep,
    session: SessionDep,
    tenancy: UploaderDep,
    q: Annotated[
        str | None, Query(max_length=500, pattern=NO_NUL, description="full-text search")
    ] = None,
    file_status: Annotated[FileStatus | None, Query(alias="status")] = None,
    content_type: Annotated[str | None, Query(max_length=255, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
) -> FileList:
    """The tenant's files (an upload token's: those it created), newest first: full-text
    search over names and OCR text."""
    query = select(File).where(
        File.tenant_id == tenancy.tenant_id, File.status != FileStatus.DELETED.value
    )
    if tenancy.token is not None:
        query = query.where(File.upload_token_id == tenancy.token.id)
    if q and q.strip():
        names = File.search_vector.op("@@")(func.websearch_to_tsquery("simple", q))
        in_text = exists().where(
            BlobText.sha256 == File.sha256,
            BlobText.search_vector.op("@@")(func.websearch_to_tsquery("english", q)),
        )
        query = query.where(or_(names, in_text))
    if file_status is not None:
        query = query.where(File.status == file_status.value)
    if content_type:
        column = func.coalesce(File.content_type, File.declared_content_type)
        query = query.where(
            column.startswith(content_type.rstrip("*"))
            if content_type.endswith("/*")
            else column == content_type
        )
    if cursor:
        created_at, last_id = decode_cursor(cursor)
        query = query.where(tuple_(File.created_at, File.id) < tuple_(created_at, last_id))
    rows = (
        (
            await session.execute(
                query.order_by(File.created_at.desc(), File.id.desc()).limit(limit + 1)
            )
        )
        .scalars()
        .all()
    )
    page = list(rows[:limit])
    blobs = await _blobs_of(session, page)
    files = [file_from_row(state, f, blobs.get(f.sha256 or "")) for f in page]
    next_cursor = encode_cursor(page[-1]) if len(rows) > limit else None
    return FileList(files=files, next_cursor=next_cursor)


@router.delete(
    "/{file_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(
        ErrorCode.FILE_NOT_FOUND, ErrorCode.FILE_NOT_FINISHED, ErrorCode.FILE_DELETED
    ),
)
async def delete_file(
    file_id: uuid.UUID, state: StateDep, session: SessionDep, tenancy: TenancyDep
) -> Response:
    """Deletes the file; its blob and derivatives go with the last reference to them."""
    file = await owned_file(session, file_id, tenancy)
    if not FileStatus(file.status).is_terminal:
        raise Conflict(
            f"This file is {file.status}; delete it once processing has finished.",
            code=ErrorCode.FILE_NOT_FINISHED,
        )
    if _retrying(file):
        raise Conflict(
            "A retry of this file is under way; delete it once it has finished.",
            code=ErrorCode.FILE_NOT_FINISHED,
        )
    previous = file.status
    # Committed first, and only if the file is still as read: a retry or another delete in
    # between wins, and the release below acts only on a committed `deleted`.
    deleted = await session.execute(
        update(File)
        .where(File.id == file.id, File.status == previous, File.stages == file.stages)
        .values(status=FileStatus.DELETED.value, deleted_at=datetime.now(UTC))
        .returning(File.id)
    )
    if deleted.first() is None:
        await session.rollback()
        raise Conflict(
            "This file changed while it was being deleted; look at it and try again.",
            code=ErrorCode.FILE_NOT_FINISHED,
        )
    await session.commit()
    try:
        await state.temporal.start_workflow(
            DeleteFileWorkflow.run,
            DeleteFileInput(file_id=str(file.id)),
            id=delete_workflow_id(str(file.id)),
            task_queue=state.settings.ingest_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
    except RPCError as e:
        # Nothing acted on the deletion: the file is as it was, and the client may ask again.
        await session.execute(
            update(File)
            .where(File.id == file.id, File.status == FileStatus.DELETED.value)
            .values(status=previous, deleted_at=None)
        )
        await session.commit()
        log.warning("delete of %s undone, the workflow engine is unreachable: %s", file.id, e)
        raise ServiceUnavailable("The workflow engine is not reachable; try again shortly.") from e
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- retry ---------------------------------------------------------------------------------


@router.post(
    "/{file_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=FilePublic,
    responses=responses(
        ErrorCode.FILE_NOT_FOUND,
        ErrorCode.NOT_RETRYABLE,
        ErrorCode.BYTES_GONE,
        ErrorCode.FILE_DELETED,
        ErrorCode.FILE_QUOTA_EXCEEDED,
        ErrorCode.STORAGE_QUOTA_EXCEEDED,
    ),
)
async def retry_file(
    file_id: uuid.UUID, state: StateDep, session: SessionDep, tenancy: TenancyDep
) -> FilePublic:
    """Re-runs a finished file's failed stages, as a new run of its workflow: a failed file
    whose bytes are still held is processed again (`processing`, then ready, quarantined or
    failed); a ready file re-runs its failed thumbnails or OCR and stays ready."""
    file = await owned_file(session, file_id, tenancy)
    previous = FileStatus(file.status)
    stages = _stages_to_retry(file)
    blob = await _held_blob(state, session, file)
    if previous is FileStatus.FAILED:
        # A failed file holds no room in the tenant's quota; processing again, it does.
        size = file.size if file.size is not None else file.declared_size
        await check_quota(session, tenancy.tenant_id, size, tenancy.max_bytes, tenancy.max_files)
    file_stages = await _mark_retrying(session, file, previous, stages)
    upload = (
        await session.execute(select(Upload).where(Upload.file_id == file.id))
    ).scalar_one_or_none()
    kept_events = await session.execute(
        select(func.max(FileEvent.seq)).where(FileEvent.file_id == file.id)
    )
    settings = state.settings
    ingest = IngestInput(
        file_id=str(file.id),
        tenant_id=str(file.tenant_id),
        upload_id=str(upload.id) if upload else "",
        bucket=blob.bucket,
        object_key=upload.object_key if upload else blob.object_key,
        declared_size=file.declared_size,
        declared_content_type=file.declared_content_type,
        declared_sha256=file.declared_sha256,
        expire_after_seconds=settings.upload_expiry_seconds,
        reconcile_after_seconds=settings.reconcile_after_seconds,
        visibility=Visibility(file.visibility),
        scan_task_queue=settings.scan_task_queue,
        media_task_queue=settings.media_task_queue,
        thumbnail_sizes=list(settings.thumbnail_sizes),
        quarantine_bucket=settings.quarantine_bucket,
        stage_names=list(state.stage_names),
        scan_oversize=tenancy.scan_oversize,
        # The new run's progress events follow the ones kept from the runs before.
        event_seq_offset=kept_events.scalar() or 0,
        retry=RetryRequest(
            blob=BlobRef(
                bucket=blob.bucket,
                key=blob.object_key,
                sha256=blob.sha256,
                size=blob.size,
                content_type=blob.content_type,
            ),
            previous_status=previous,
            stages=stages,
            file_stages=file_stages,
        ),
    )
    await _start_retry(state, session, file, ingest)
    await session.refresh(file)
    return file_from_row(state, file, blob)


def _stages_to_retry(file: File) -> list[str]:
    """The stages a retry re-runs, or why there is nothing to retry."""
    current = FileStatus(file.status)
    if current is FileStatus.FAILED:
        if file.sha256 is None:  # it failed before its bytes were kept (verify)
            raise Conflict(
                f"This file's bytes were not kept ({file.status_detail}); upload it again.",
                code=ErrorCode.BYTES_GONE,
            )
        return list(PROCESSING_STAGES)
    if current is FileStatus.READY:
        failed = [
            name
            for name, stage in file.stages.items()
            if name != "verify" and (stage or {}).get("status") == StageStatus.FAILED.value
        ]
        if failed:
            return failed
        why = "Nothing of this file failed, or a retry of it is already under way."
    elif not current.is_terminal:
        why = f"This file is still {current.value}; retry it once it has finished."
    elif current is FileStatus.QUARANTINED:
        why = "This file is quarantined: its bytes are never processed again."
    else:
        why = f"This file never got its bytes ({current.value}); upload it again."
    raise Conflict(why, code=ErrorCode.NOT_RETRYABLE)


async def _held_blob(state: AppState, session: AsyncSession, file: File) -> Blob:
    """The file's blob, if its bytes are still in the store (a HEAD, no bytes read)."""
    blob = await session.get(Blob, file.sha256) if file.sha256 else None
    if blob is not None and blob.status == BlobStatus.QUARANTINED.value:
        raise Conflict(
            "These bytes were found infected since: they are never processed again.",
            code=ErrorCode.NOT_RETRYABLE,
        )
    gone = Conflict(
        "This file's bytes are no longer in the store; upload it again.", code=ErrorCode.BYTES_GONE
    )
    if blob is None or blob.status == BlobStatus.RELEASED.value:
        raise gone
    try:
        await asyncio.to_thread(state.s3.head_object, Bucket=blob.bucket, Key=blob.object_key)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            raise gone from e
        raise ServiceUnavailable("The object store is not reachable; try again shortly.") from e
    return blob


async def _mark_retrying(
    session: AsyncSession, file: File, previous: FileStatus, stages: list[str]
) -> dict[str, StageState]:
    """Marks the retry on the row (the re-run stages pending), only if it is still as read:
    of two retries at once, the second waits for the first's row lock, then finds the row
    changed and is refused. Returns the file's stages as marked."""
    pending = {name: {"status": StageStatus.PENDING.value, "detail": None} for name in stages}
    marked = {**file.stages, **pending}  # read before the UPDATE expires the loaded row
    query = (
        update(File)
        .where(File.id == file.id, File.status == previous.value)
        .values(stages=File.stages.op("||")(literal(pending, JSONB)), updated_at=func.now())
    )
    if previous is FileStatus.FAILED:
        query = query.values(status=FileStatus.PROCESSING.value, status_detail=None)
    else:
        for name in stages:
            query = query.where(File.stages[name]["status"].astext == StageStatus.FAILED.value)
    if (await session.execute(query.returning(File.id))).first() is None:
        await session.rollback()
        raise Conflict(
            "A retry of this file is already under way, or it changed meanwhile.",
            code=ErrorCode.NOT_RETRYABLE,
        )
    return {
        name: StageState(StageStatus(s["status"]), s.get("detail"), s.get("duration_ms"))
        for name, s in marked.items()
    }


async def _start_retry(
    state: AppState, session: AsyncSession, file: File, ingest: IngestInput
) -> None:
    # As for a new upload, the run starts before the row commits; the run's first activity
    # waits on the row's lock and does nothing if this transaction rolls back.
    assert ingest.retry is not None
    rescan = ingest.retry.previous_status is FileStatus.FAILED
    status = FileStatus.PROCESSING if rescan else FileStatus.READY
    try:
        await state.temporal.start_workflow(
            IngestWorkflow.run,
            ingest,
            id=file.workflow_id,
            task_queue=state.settings.ingest_task_queue,
            # A new run of the same id: the file's workflow_id and its progress query keep
            # working. The previous run must have closed; if it has not, this is refused.
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(search_attributes.FILE_ID, ingest.file_id),
                    SearchAttributePair(search_attributes.TENANT, ingest.tenant_id),
                    SearchAttributePair(search_attributes.STATUS, status.value),
                ]
            ),
        )
    except WorkflowAlreadyStartedError as e:
        await session.rollback()
        raise Conflict(
            "This file's workflow is still finishing; try again shortly.",
            code=ErrorCode.NOT_RETRYABLE,
        ) from e
    except RPCError as e:
        await session.rollback()
        raise ServiceUnavailable("The workflow engine is not reachable; try again shortly.") from e
    await session.commit()


def _retrying(file: File) -> bool:
    """A ready file whose failed stages a retry is re-running (marked pending)."""
    return file.status == FileStatus.READY.value and any(
        name != "verify" and (stage or {}).get("status") == StageStatus.PENDING.value
        for name, stage in file.stages.items()
    )


# --- the file as the API shows it -------------------------------------------------------


async def file_public(state: AppState, session: AsyncSession, file: File) -> FilePublic:
    """While the workflow runs its query is the truth; afterwards Postgres is."""
    if not FileStatus(file.status).is_terminal:
        progress = await _query_progress(state, file.workflow_id)
        if progress is not None and not progress.status.is_terminal:
            public = file_from_row(state, file, None)
            public.status, public.status_detail = progress.status, progress.detail
            public.stages = {
                name: StagePublic(status=s.status, detail=s.detail, duration_ms=s.duration_ms)
                for name, s in progress.stages.items()
            }
            return public
        await session.refresh(file)
    blob = await session.get(Blob, file.sha256) if file.sha256 else None
    return file_from_row(state, file, blob)


# The SDK's converter re-resolves the dataclass's type hints on every typed query (about
# 1 ms of CPU); the query is fetched as plain JSON and validated by one prepared adapter.
_PROGRESS = TypeAdapter(IngestProgress)


async def _wait_for_outcome(state: AppState, workflow_id: str, seconds: float) -> None:
    """Returns once the file's workflow has closed (its outcome committed first), after
    `seconds`, or when the process starts to stop. One long poll the server answers when
    the run closes: no worker is asked, unlike a client polling the status (a workflow
    query each time)."""
    closed = asyncio.ensure_future(state.temporal.get_workflow_handle(workflow_id).result())
    stopping = asyncio.ensure_future(state.draining.wait())
    try:
        await asyncio.wait({closed, stopping}, timeout=seconds, return_when=FIRST_COMPLETED)
    finally:
        for task in (closed, stopping):
            task.cancel()
        # A failed or unreachable run, or one cut short: the row answers either way.
        with contextlib.suppress(asyncio.CancelledError, WorkflowFailureError, RPCError):
            await closed


async def _query_progress(state: AppState, workflow_id: str) -> IngestProgress | None:
    handle = state.temporal.get_workflow_handle_for(IngestWorkflow.run, workflow_id)
    try:
        answer = await handle.query(
            IngestWorkflow.status.__name__,
            rpc_timeout=timedelta(seconds=state.settings.workflow_query_timeout_seconds),
        )
        return _PROGRESS.validate_python(answer)
    except (RPCError, WorkflowQueryRejectedError):
        # Closed, unreachable or too busy to answer in time: the database row is the answer.
        return None


async def _blobs_of(session: AsyncSession, files: list[File]) -> dict[str, Blob]:
    hashes = {f.sha256 for f in files if f.sha256}
    if not hashes:
        return {}
    found = await session.execute(select(Blob).where(Blob.sha256.in_(hashes)))
    return {b.sha256: b for b in found.scalars()}


def file_from_row(state: AppState, file: File, blob: Blob | None) -> FilePublic:
    """The file as its row (and blob, once ready) say, without asking the workflow."""
    ready = file.status == FileStatus.READY.value and blob is not None
    thumbnails = (
        [_thumbnail(state, t) for t in blob.thumbnails] if ready and blob is not None else []
    )
    cdn_url = None
    if (
        ready
        and blob is not None
        and blob.public_key
        and file.visibility == Visibility.PUBLIC.value
    ):
        cdn_url = _cdn_url(state, blob.public_key)
    return FilePublic(
        id=file.id,
        filename=file.filename,
        size=file.size if file.size is not None else file.declared_size,
        content_type=file.content_type or file.declared_content_type,
        sha256=file.sha256,
        visibility=Visibility(file.visibility),
        status=FileStatus(file.status),
        status_detail=file.status_detail,
        stages={name: StagePublic.model_validate(s) for name, s in file.stages.items()},
        thumbnails=thumbnails,
        metadata=dict(blob.properties) if ready and blob is not None else {},
        scanned=(not is_unscanned(file.stages)) if ready else None,
        cdn_url=cdn_url,
        workflow_id=file.workflow_id,
        created_at=file.created_at,
        ready_at=file.ready_at,
    )


def _thumbnail(state: AppState, thumb: dict[str, Any]) -> ThumbnailPublic:
    url = state.s3_presign.generate_presigned_url(
        "get_object",
        Params={"Bucket": thumb["bucket"], "Key": thumb["key"]},
        ExpiresIn=state.settings.download_url_ttl_seconds,
    )
    return ThumbnailPublic(
        size=thumb["size"], width=thumb["width"], height=thumb["height"], url=url
    )


def _cdn_url(state: AppState, public_key: str) -> str:
    return f"{state.settings.edge_public}/{public_key}"


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback and the real (UTF-8) name, safe in a header."""
    fallback = (
        "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename) or "download"
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def encode_cursor(file: File) -> str:
    raw = json.dumps([file.created_at.isoformat(), str(file.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, file_id = json.loads(raw)
        return datetime.fromisoformat(created_at), uuid.UUID(file_id)
    except (binascii.Error, ValueError, TypeError) as e:
        raise InvalidCursor("The cursor is not one this API gave out.") from e

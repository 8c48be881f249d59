"""Uploads: create one (file row, workflow, pre-signed URL) and look at its state."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, status
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from api.deps import AppState, SessionDep, StateDep, TenancyDep
from api.errors import NotFound, PayloadTooLarge, ServiceUnavailable, responses
from api.routes.files import file_public
from api.schemas import UploadCreate, UploadCreated, UploadPublic
from conveyor_core.db.models import Blob, File, Upload
from conveyor_core.objectstore import incoming_key, presign_put
from conveyor_core.types import BlobStatus, FileStatus, IngestInput
from workflows.ingest import IngestWorkflow, workflow_id_for

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])

# S3 caps a single PUT at 5 GiB; larger files need multipart.
SINGLE_PUT_LIMIT = 5 * 1024**3


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadCreated,
    responses=responses(PayloadTooLarge, ServiceUnavailable),
)
async def create_upload(
    body: UploadCreate, state: StateDep, session: SessionDep, tenancy: TenancyDep
) -> UploadCreated:
    settings = state.settings
    limit = min(settings.max_file_size, SINGLE_PUT_LIMIT)
    if body.size > limit:
        raise PayloadTooLarge(f"Files may be at most {limit} bytes; this one declares {body.size}.")

    deduplicated = body.sha256 is not None and await _tenant_holds(
        session, tenancy.tenant_id, body.sha256, body.size
    )
    file_id, upload_id = uuid.uuid4(), uuid.uuid4()
    key = incoming_key(str(tenancy.tenant_id), str(upload_id))
    workflow_id = workflow_id_for(str(file_id))
    session.add(
        File(
            id=file_id,
            tenant_id=tenancy.tenant_id,
            filename=body.filename,
            declared_size=body.size,
            declared_content_type=body.content_type,
            declared_sha256=body.sha256,
            visibility=body.visibility.value,
            status=(FileStatus.PROCESSING if deduplicated else FileStatus.AWAITING_UPLOAD).value,
            stages={},
            workflow_id=workflow_id,
        )
    )
    await session.flush()
    if not deduplicated:
        session.add(
            Upload(
                id=upload_id,
                file_id=file_id,
                tenant_id=tenancy.tenant_id,
                bucket=settings.bucket,
                object_key=key,
                method="PUT",
                expires_at=datetime.now(UTC) + timedelta(seconds=settings.upload_expiry_seconds),
            )
        )
        await session.flush()
    ingest = IngestInput(
        file_id=str(file_id),
        tenant_id=str(tenancy.tenant_id),
        upload_id=str(upload_id),
        bucket=settings.bucket,
        object_key=key,
        declared_size=body.size,
        declared_content_type=body.content_type,
        declared_sha256=body.sha256,
        expire_after_seconds=settings.upload_expiry_seconds,
        reconcile_after_seconds=settings.reconcile_after_seconds,
        visibility=body.visibility,
        deduplicated=deduplicated,
        scan_task_queue=settings.scan_task_queue,
        media_task_queue=settings.media_task_queue,
        thumbnail_sizes=list(settings.thumbnail_sizes),
        quarantine_bucket=settings.quarantine_bucket,
    )
    await _start_ingest(state, session, ingest, workflow_id)

    if deduplicated:
        return UploadCreated(upload_id=None, file_id=file_id, method="DEDUPLICATED")
    put = await asyncio.to_thread(
        presign_put,
        state.s3_presign,
        bucket=settings.bucket,
        key=key,
        size=body.size,
        content_type=body.content_type,
        sha256_hex=body.sha256,
        expires_in=settings.upload_url_ttl_seconds,
    )
    return UploadCreated(
        upload_id=upload_id,
        file_id=file_id,
        method="PUT",
        url=put.url,
        headers=put.headers,
        expires_at=datetime.now(UTC) + timedelta(seconds=settings.upload_url_ttl_seconds),
    )


async def _tenant_holds(
    session: AsyncSession, tenant_id: uuid.UUID, sha256: str, size: int
) -> bool:
    """Instant dedup only within one tenant: across tenants it would reveal the bytes exist."""
    found = await session.execute(
        select(File.id)
        .join(Blob, Blob.sha256 == File.sha256)
        .where(
            File.tenant_id == tenant_id,
            File.sha256 == sha256,
            File.status == FileStatus.READY.value,
            Blob.status == BlobStatus.READY.value,
            Blob.size == size,
        )
        .limit(1)
    )
    return found.first() is not None


async def _start_ingest(
    state: AppState, session: AsyncSession, ingest: IngestInput, workflow_id: str
) -> None:
    # The workflow starts before the rows commit: a client can only upload (and so trigger
    # the workflow's work) after this answers, and a failed start leaves no row behind.
    try:
        await state.temporal.start_workflow(
            IngestWorkflow.run,
            ingest,
            id=workflow_id,
            task_queue=state.settings.ingest_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except RPCError as e:
        await session.rollback()
        raise ServiceUnavailable("The workflow engine is not reachable; try again shortly.") from e
    await session.commit()


@router.get("/{upload_id}", response_model=UploadPublic, responses=responses(NotFound))
async def get_upload(
    upload_id: uuid.UUID, state: StateDep, session: SessionDep, tenancy: TenancyDep
) -> UploadPublic:
    row = (
        await session.execute(
            select(Upload, File)
            .join(File, File.id == Upload.file_id)
            .where(Upload.id == upload_id, Upload.tenant_id == tenancy.tenant_id)
        )
    ).first()
    if row is None:
        raise NotFound("No such upload.", code="upload_not_found")
    upload, file = row
    current = await file_public(state, session, file)
    return UploadPublic(
        upload_id=upload.id,
        file_id=file.id,
        method=upload.method,
        status=current.status,
        expires_at=upload.expires_at,
    )

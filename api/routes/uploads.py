"""Uploads: create one (file row, workflow, pre-signed URL) and look at its state."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, cast

from botocore.exceptions import BotoCoreError, ClientError
from fastapi import APIRouter, Header, Response, status
from pydantic import ValidationError
from sqlalchemy import Insert, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError

from api import tokens
from api.deps import AppState, AutocommitSessionDep, StateDep, Tenancy, UploaderDep
from api.errors import (
    AUTHENTICATED,
    BadRequest,
    Conflict,
    ConveyorError,
    ErrorCode,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unprocessable,
    responses,
)
from api.limits import check_quota
from api.routes.files import file_from_row, file_public
from api.schemas import (
    CompletedPart,
    CompleteRequest,
    HeldPart,
    PartsPresigned,
    PartsRequest,
    PartUrl,
    UploadCreate,
    UploadCreated,
    UploadPublic,
    UploadState,
)
from conveyor_core.db.models import Base, Blob, File, Upload
from conveyor_core.multipart_calls import StoreCallError, UploadedPart
from conveyor_core.objectstore import (
    Checksum,
    ChecksumAlgorithm,
    PartLayout,
    PartToSign,
    StoredPart,
    list_parts,
    part_layout,
    presign_put,
)
from conveyor_core.types import (
    BlobStatus,
    FileStatus,
    IngestInput,
    Visibility,
    incoming_key,
    new_sealed_key,
)
from observability.metrics import BYTES_DECLARED, UPLOADS_CREATED
from observability.tracing import current_traceparent, tag_current_span
from workflows import search_attributes
from workflows.ingest import IngestWorkflow, workflow_id_for

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/uploads", tags=["uploads"], responses=AUTHENTICATED)


def _insert_of(table: str, columns: tuple[str, ...]) -> Insert:
    """An INSERT of `columns` into `table`, each bound as `<table>_<column>`: built once,
    so a request does not build (and SQLAlchemy does not key and look up) it again."""
    target = Base.metadata.tables[table]
    return insert(target).values(
        {name: bindparam(f"{table}_{name}", type_=target.c[name].type) for name in columns}
    )


FILE_COLUMNS = (
    "id",
    "tenant_id",
    "filename",
    "declared_size",
    "declared_content_type",
    "declared_sha256",
    "visibility",
    "status",
    "stages",
    "workflow_id",
    "idempotency_key",
    "request_digest",
    "upload_token_id",
)
UPLOAD_COLUMNS = (
    "id",
    "file_id",
    "tenant_id",
    "bucket",
    "object_key",
    "method",
    "multipart_upload_id",
    "part_size",
    "part_count",
    "part_checksum",
    "expires_at",
    "sealed_key",
    "traceparent",
)
NEW_FILE = _insert_of("file", FILE_COLUMNS)
# Both rows in one statement: one round trip, and never one without the other.
NEW_FILE_AND_UPLOAD = _insert_of("upload", UPLOAD_COLUMNS).add_cte(NEW_FILE.cte("new_file"))


# Replays say so, as Stripe's API does; the answer is otherwise the first one's.
REPLAYED = "Idempotent-Replayed"
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Makes the create repeatable: the same key and request again answer the "
        "same upload (printable ASCII, at most 255 characters; a UUID is a good one).",
    ),
]


def _prefixed(prefix: str, row: dict[str, object]) -> dict[str, object]:
    return {f"{prefix}{name}": value for name, value in row.items()}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadCreated,
    responses=responses(
        ErrorCode.INVALID_PARTS,
        ErrorCode.FILE_TOO_LARGE,
        ErrorCode.FILE_QUOTA_EXCEEDED,
        ErrorCode.STORAGE_QUOTA_EXCEEDED,
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        ErrorCode.CONTENT_TYPE_NOT_ALLOWED,
        ErrorCode.VISIBILITY_NOT_ALLOWED,
        ErrorCode.UPLOAD_TOKEN_USED_UP,
    ),
)
async def create_upload(
    body: UploadCreate,
    state: StateDep,
    session: AutocommitSessionDep,
    tenancy: UploaderDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> UploadCreated:
    """Declares a file. With an `Idempotency-Key`, the same request again (its answer lost
    on the way) answers the same upload, with fresh URLs, instead of making another."""
    settings = state.settings
    if body.size > settings.max_file_size:
        raise PayloadTooLarge(
            f"Files may be at most {settings.max_file_size} bytes; this one declares {body.size}."
        )
    if tenancy.token is not None:
        tokens.check_declaration(tenancy.token, body.size, body.content_type, body.visibility)
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise Unprocessable(
            "Idempotency-Key must be 1 to 255 printable ASCII characters, without spaces.",
            code=ErrorCode.INVALID_REQUEST,
        )
    request = _KeyedRequest(idempotency_key, body) if idempotency_key else None
    try:
        if tenancy.max_bytes is None and tenancy.max_files is None and tenancy.token is None:
            # A repeat is found by the key's unique index when the rows go in: nothing is
            # looked up on the way of a first request.
            return await _declare(body, state, session, tenancy, request)
        # A repeat must not count against the quota its first request already used.
        if request is not None and (earlier := await _keyed_file(state, tenancy, request)):
            return await _replay(state, body, request, response, *earlier)
        # The tenant's row stays locked from the count until the new row commits, so
        # concurrent uploads cannot both slip in under the quota.
        async with state.sessions() as transaction:
            await check_quota(
                transaction, tenancy.tenant_id, body.size, tenancy.max_bytes, tenancy.max_files
            )
            if tenancy.token is not None:  # counted in the same transaction as the file
                await tokens.reserve_file(transaction, tenancy.token)
            return await _declare(body, state, transaction, tenancy, request, in_transaction=True)
    except PayloadTooLarge:
        # Over quota, perhaps only because a concurrent request with the same key got in
        # first: then this one is its repeat.
        if request is None or (earlier := await _keyed_file(state, tenancy, request)) is None:
            raise
        return await _replay(state, body, request, response, *earlier)
    except _KeyTaken:
        assert request is not None
        earlier = await _keyed_file(state, tenancy, request)
        if earlier is None:  # made and then undone meanwhile: not worth a second try
            raise ServiceUnavailable(
                "A request with this Idempotency-Key was under way; send it again."
            ) from None
        return await _replay(state, body, request, response, *earlier)


async def _declare(
    body: UploadCreate,
    state: AppState,
    session: AsyncSession,
    tenancy: Tenancy,
    request: _KeyedRequest | None,
    *,
    in_transaction: bool = False,
    browser: Literal["POST", "MULTIPART"] | None = None,
) -> UploadCreated:
    """Makes the upload: multipart upload in the store, workflow, then the rows.

    `browser`: for a widget that says no size (`/v1/uppy`): `body.size` is the most the
    file may be, and the client signs its own parts' layout (POST: one form upload)."""
    settings = state.settings
    # Instant dedup hands over bytes on the word of a hash: an API key's tenant holds them
    # already, but an upload token (a browser, one of the app's users) must send them.
    deduplicated = (
        body.sha256 is not None
        and tenancy.token is None
        and await _tenant_holds(session, tenancy.tenant_id, body.sha256, body.size)
    )
    file_id, upload_id = uuid.uuid4(), uuid.uuid4()
    tag_current_span(file_id=str(file_id), tenant_id=str(tenancy.tenant_id))
    key = incoming_key(str(tenancy.tenant_id), str(upload_id))
    workflow_id = workflow_id_for(str(file_id))
    multipart = browser == "MULTIPART" or (
        browser is None and not deduplicated and body.size >= settings.multipart_threshold
    )
    layout = None
    if multipart and browser is None:
        layout = (
            PartLayout(body.part_size, -(-body.size // body.part_size))
            if body.part_size is not None
            else part_layout(body.size, settings.multipart_part_size)
        )
        _check_part_numbers(layout, {p.part_number for p in body.parts or []})
    multipart_upload_id = (
        await _create_multipart(state, key, body.content_type, body.part_checksum)
        if multipart
        else None
    )
    upload_expires_at = datetime.now(UTC) + timedelta(seconds=settings.upload_expiry_seconds)
    sealed = new_sealed_key()
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
        stage_names=list(state.stage_names),
        scan_oversize=tenancy.scan_oversize,
        multipart_upload_id=multipart_upload_id,
        sealed_key=sealed,
        size_is_limit=browser is not None,
    )
    await _start_ingest(state, ingest, workflow_id)
    file_row = {
        "id": file_id,
        "tenant_id": tenancy.tenant_id,
        "filename": body.filename,
        "declared_size": body.size,
        "declared_content_type": body.content_type,
        "declared_sha256": body.sha256,
        "visibility": body.visibility.value,
        "status": (FileStatus.PROCESSING if deduplicated else FileStatus.AWAITING_UPLOAD).value,
        "stages": {},
        "workflow_id": workflow_id,
        "idempotency_key": request.key if request else None,
        "request_digest": request.digest if request else None,
        "upload_token_id": tenancy.token.id if tenancy.token else None,
    }
    upload_row = {
        "id": upload_id,
        "file_id": file_id,
        "tenant_id": tenancy.tenant_id,
        "bucket": settings.bucket,
        "object_key": key,
        "method": browser or ("MULTIPART" if multipart else "PUT"),
        "multipart_upload_id": multipart_upload_id,
        "part_size": layout.part_size if layout else None,
        "part_count": layout.part_count if layout else None,
        "part_checksum": body.part_checksum if layout else None,
        "expires_at": upload_expires_at,
        "sealed_key": sealed,
        "traceparent": current_traceparent(),
    }
    try:
        if deduplicated:
            await session.execute(NEW_FILE, _prefixed("file_", file_row))
        else:
            await session.execute(
                NEW_FILE_AND_UPLOAD,
                _prefixed("file_", file_row) | _prefixed("upload_", upload_row),
            )
        if in_transaction:  # else the statement committed itself
            await session.commit()
    except Exception as e:
        # The workflow runs, but its row will never exist and the client hears 503: undo
        # what this request made, or the workflow would wait for bytes nobody sends.
        await _abandon(state, ingest, workflow_id)
        if _is_key_taken(e):
            raise _KeyTaken from e
        raise
    method = browser or ("DEDUPLICATED" if deduplicated else "MULTIPART" if multipart else "PUT")
    UPLOADS_CREATED.labels(method).inc()
    BYTES_DECLARED.inc(body.size)
    if deduplicated:
        return UploadCreated(upload_id=None, file_id=file_id, method="DEDUPLICATED")
    if browser is not None:  # its URLs are the widget's routes' to sign
        return UploadCreated(
            upload_id=upload_id, file_id=file_id, method=browser, expires_at=upload_expires_at
        )
    return await _answer(
        state,
        body,
        file_id=file_id,
        upload_id=upload_id,
        bucket=settings.bucket,
        key=key,
        layout=layout,
        multipart_upload_id=multipart_upload_id,
        expires_at=upload_expires_at,
    )


async def _answer(
    state: AppState,
    body: UploadCreate,
    *,
    file_id: uuid.UUID,
    upload_id: uuid.UUID,
    bucket: str,
    key: str,
    layout: PartLayout | None,
    multipart_upload_id: str | None,
    expires_at: datetime,
) -> UploadCreated:
    """The answer to a create: where to send the bytes, with URLs signed now."""
    settings = state.settings
    if layout is not None:
        signed = _sign(
            state,
            bucket,
            key,
            multipart_upload_id or "",
            layout,
            body.size,
            {p.part_number: p.checksum() for p in body.parts or []},
        )
        return UploadCreated(
            upload_id=upload_id,
            file_id=file_id,
            method="MULTIPART",
            part_size=layout.part_size,
            part_count=layout.part_count,
            expires_at=expires_at,
            parts=signed,
            parts_expire_at=(
                datetime.now(UTC) + timedelta(seconds=settings.upload_url_ttl_seconds)
                if signed
                else None
            ),
        )
    put = await asyncio.to_thread(
        presign_put,
        state.s3_presign,
        bucket=bucket,
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


_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


class _KeyedRequest:
    """A create request and the `Idempotency-Key` it came with."""

    def __init__(self, key: str, body: UploadCreate) -> None:
        self.key = key
        self.digest = hashlib.sha256(body.model_dump_json().encode()).hexdigest()


class _KeyTaken(Exception):
    """An earlier request with the same key made its rows first."""


def _is_key_taken(error: Exception) -> bool:
    diag = getattr(getattr(error, "orig", None), "diag", None)
    return isinstance(error, IntegrityError) and (
        getattr(diag, "constraint_name", None) == "uq_file_tenant_idempotency_key"
    )


KEYED_FILE = (
    select(File, Upload)
    .outerjoin(Upload, Upload.file_id == File.id)
    .where(File.tenant_id == bindparam("tenant_id"), File.idempotency_key == bindparam("key"))
)


async def _keyed_file(
    state: AppState, tenancy: Tenancy, request: _KeyedRequest
) -> tuple[File, Upload | None] | None:
    async with state.sessions() as session:
        row = (
            await session.execute(KEYED_FILE, {"tenant_id": tenancy.tenant_id, "key": request.key})
        ).first()
    if row is None:
        return None
    if not tokens.may_read(tenancy, row[0]):
        # Another client of the tenant made it: an upload token learns nothing of it.
        raise Unprocessable(
            "This Idempotency-Key came with another request; use a new key for a new upload.",
            code=ErrorCode.IDEMPOTENCY_KEY_REUSED,
        )
    return row[0], row[1]


async def _replay(
    state: AppState,
    body: UploadCreate,
    request: _KeyedRequest,
    response: Response,
    file: File,
    upload: Upload | None,
) -> UploadCreated:
    """The answer the first request with this key got (its URLs signed afresh)."""
    if file.request_digest != request.digest:
        raise Unprocessable(
            "This Idempotency-Key came with another request; use a new key for a new upload.",
            code=ErrorCode.IDEMPOTENCY_KEY_REUSED,
        )
    response.headers[REPLAYED] = "true"
    if upload is None:
        return UploadCreated(upload_id=None, file_id=file.id, method="DEDUPLICATED")
    if not takes_bytes(upload, file):
        # Its bytes landed (or it ended): nothing is signed, it is answered as it stands.
        return UploadCreated(
            upload_id=upload.id,
            file_id=file.id,
            method="MULTIPART" if upload.multipart_upload_id else "PUT",
            part_size=upload.part_size,
            part_count=upload.part_count,
            expires_at=upload.expires_at,
            status=file.status,
        )
    layout = (
        PartLayout(upload.part_size, upload.part_count)
        if upload.part_size is not None and upload.part_count is not None
        else None
    )
    return await _answer(
        state,
        body,
        file_id=file.id,
        upload_id=upload.id,
        bucket=upload.bucket,
        key=upload.object_key,
        layout=layout,
        multipart_upload_id=upload.multipart_upload_id,
        expires_at=upload.expires_at,
    )


# Instant dedup only within one tenant: across tenants it would reveal the bytes exist.
TENANT_HOLDS = (
    select(File.id)
    .join(Blob, Blob.sha256 == File.sha256)
    .where(
        File.tenant_id == bindparam("tenant_id"),
        File.sha256 == bindparam("sha256"),
        File.status == FileStatus.READY.value,
        Blob.status == BlobStatus.READY.value,
        Blob.size == bindparam("size"),
    )
    .limit(1)
)


async def _tenant_holds(
    session: AsyncSession, tenant_id: uuid.UUID, sha256: str, size: int
) -> bool:
    found = await session.execute(
        TENANT_HOLDS, {"tenant_id": tenant_id, "sha256": sha256, "size": size}
    )
    return found.first() is not None


async def _start_ingest(state: AppState, ingest: IngestInput, workflow_id: str) -> None:
    # The workflow starts before the rows are written: a client can only upload (and so
    # trigger the workflow's work) after this answers, and a failed start leaves no row.
    initial_status = (
        FileStatus.PROCESSING if ingest.deduplicated else FileStatus.AWAITING_UPLOAD
    ).value
    try:
        await state.temporal.start_workflow(
            IngestWorkflow.run,
            ingest,
            id=workflow_id,
            task_queue=state.settings.ingest_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(search_attributes.FILE_ID, ingest.file_id),
                    SearchAttributePair(search_attributes.TENANT, ingest.tenant_id),
                    SearchAttributePair(search_attributes.STATUS, initial_status),
                ]
            ),
        )
    except RPCError as e:
        await _abort_multipart(state, ingest)
        raise ServiceUnavailable("The workflow engine is not reachable; try again shortly.") from e


async def _abandon(state: AppState, ingest: IngestInput, workflow_id: str) -> None:
    """Best effort: a workflow left over still ends by itself at the upload's expiry."""
    try:
        await state.temporal.get_workflow_handle(workflow_id).terminate(
            reason="the file's row was not committed"
        )
    except RPCError as e:
        log.warning("workflow %s left to expire: %s", workflow_id, e)
    await _abort_multipart(state, ingest)


async def _abort_multipart(state: AppState, ingest: IngestInput) -> None:
    if ingest.multipart_upload_id is None:
        return
    try:
        await asyncio.to_thread(
            state.s3.abort_multipart_upload,
            Bucket=ingest.bucket,
            Key=ingest.object_key,
            UploadId=ingest.multipart_upload_id,
        )
    except (ClientError, BotoCoreError) as e:
        log.warning("multipart upload %s left behind: %s", ingest.object_key, e)


@router.get(
    "/{upload_id}",
    response_model=UploadPublic,
    responses=responses(ErrorCode.UPLOAD_NOT_FOUND),
)
async def get_upload(
    upload_id: uuid.UUID, state: StateDep, session: AutocommitSessionDep, tenancy: UploaderDep
) -> UploadPublic:
    upload, file = await _owned_upload(session, upload_id, tenancy)
    current = await file_public(state, session, file)
    held: list[StoredPart] = []
    if upload.multipart_upload_id is not None and current.status == FileStatus.AWAITING_UPLOAD:
        held = await held_parts(state, upload) or []
    return UploadPublic(
        upload_id=upload.id,
        file_id=file.id,
        method=upload.method,
        status=current.status,
        expires_at=upload.expires_at,
        part_size=upload.part_size,
        part_count=upload.part_count,
        part_checksum=cast(ChecksumAlgorithm | None, upload.part_checksum),
        parts=[HeldPart(part_number=p.part_number, size=p.size, etag=p.etag) for p in held],
    )


@router.post(
    "/{upload_id}/parts",
    response_model=PartsPresigned,
    responses=responses(
        ErrorCode.UPLOAD_NOT_FOUND,
        ErrorCode.INVALID_PARTS,
        ErrorCode.NOT_MULTIPART,
        ErrorCode.UPLOAD_NOT_ACTIVE,
    ),
)
async def sign_parts(
    upload_id: uuid.UUID,
    body: PartsRequest,
    state: StateDep,
    session: AutocommitSessionDep,
    tenancy: UploaderDep,
) -> PartsPresigned:
    """Pre-signs parts on demand, each bound to its part number and length."""
    upload, file = await _active_multipart(session, upload_id, tenancy)
    assert upload.part_count is not None and upload.part_size is not None
    wanted = body.checksums()
    _check_checksums(upload, wanted.values())
    layout = PartLayout(part_size=upload.part_size, part_count=upload.part_count)
    _check_part_numbers(layout, set(wanted))
    parts = _sign(
        state,
        upload.bucket,
        upload.object_key,
        upload.multipart_upload_id or "",
        layout,
        file.declared_size,
        wanted,
    )
    ttl = state.settings.upload_url_ttl_seconds
    return PartsPresigned(parts=parts, expires_at=datetime.now(UTC) + timedelta(seconds=ttl))


def _check_checksums(upload: Upload, checksums: Iterable[Checksum | None]) -> None:
    """Parts of an upload whose checksum was declared to the store must carry that one: the
    store refuses a part with another (InvalidRequest, on its PUT, with no word of ours on
    why), and a part with none would go unchecked."""
    if upload.part_checksum is None:
        return
    if any(c is None or c.algorithm != upload.part_checksum for c in checksums):
        raise BadRequest(
            f"This upload's parts carry {upload.part_checksum} checksums: send each part's "
            f'"{upload.part_checksum}".',
            code=ErrorCode.INVALID_PARTS,
        )


def _check_part_numbers(layout: PartLayout, numbers: set[int]) -> None:
    out_of_range = sorted(n for n in numbers if n > layout.part_count)
    if out_of_range:
        raise BadRequest(
            f"This upload has parts 1 to {layout.part_count}; there is no part "
            f"{_numbers(out_of_range)}.",
            code=ErrorCode.INVALID_PARTS,
        )


def _sign(
    state: AppState,
    bucket: str,
    key: str,
    multipart_upload_id: str,
    layout: PartLayout,
    size: int,
    wanted: dict[int, Checksum | None],
) -> list[PartUrl]:
    """Part URLs, each bound to its number and length (and checksum when given). Signed
    here, not in a thread: 100 parts take about 2 ms, not worth a thread hop."""
    numbers = sorted(wanted)
    signed = state.part_signer.parts(
        bucket=bucket,
        key=key,
        multipart_upload_id=multipart_upload_id,
        parts=[PartToSign(n, layout.part_length(size, n), wanted[n]) for n in numbers],
        expires_in=state.settings.upload_url_ttl_seconds,
    )
    return [
        PartUrl(part_number=n, url=part.url, headers=part.headers)
        for n, part in zip(numbers, signed, strict=True)
    ]


@router.post(
    "/{upload_id}/complete",
    response_model=UploadState,
    responses=responses(
        ErrorCode.UPLOAD_NOT_FOUND,
        ErrorCode.INVALID_PARTS,
        ErrorCode.MISSING_PARTS,
        ErrorCode.ETAG_MISMATCH,
        ErrorCode.CHECKSUM_MISMATCH,
        ErrorCode.NOT_MULTIPART,
        ErrorCode.UPLOAD_NOT_ACTIVE,
    ),
)
async def complete_upload(
    upload_id: uuid.UUID,
    body: CompleteRequest,
    state: StateDep,
    session: AutocommitSessionDep,
    tenancy: UploaderDep,
) -> UploadState:
    """Completes the multipart upload in the store once every part is there and matches.

    It can be repeated, as S3's own completion can: asked again once the bytes landed, it
    answers the file as it stands, so a client whose answer was lost simply asks again."""
    upload, file = await _owned_multipart(session, upload_id, tenancy)
    if file.status in _LANDED:
        return await _completed(state, session, upload, file)
    check_active(upload, file)
    assert upload.part_count is not None
    numbers = [p.part_number for p in body.parts]
    expected = set(range(1, upload.part_count + 1))
    duplicates = sorted(n for n, seen in Counter(numbers).items() if seen > 1)
    if duplicates or not set(numbers) <= expected:
        bad = duplicates or sorted(set(numbers) - expected)
        raise BadRequest(
            f"Parts must be numbered 1 to {upload.part_count}, each once; not {_numbers(bad)}.",
            code=ErrorCode.INVALID_PARTS,
        )
    missing = sorted(expected - set(numbers))
    if missing:
        raise _missing_parts(missing)
    _check_checksums(upload, (c for p in body.parts if (c := p.checksum()) is not None))
    if body.crc64nvme is not None and upload.part_checksum != "crc64nvme":
        raise BadRequest(
            "The whole file's crc64nvme is checked only for an upload made with "
            '"part_checksum": "crc64nvme".',
            code=ErrorCode.INVALID_PARTS,
        )
    # The store checks every part and etag itself; only when it refuses are its parts listed,
    # to say which ones are wrong (listing first cost as much CPU as the rest of the upload).
    try:
        await state.multipart_calls.complete(
            bucket=upload.bucket,
            key=upload.object_key,
            upload_id=upload.multipart_upload_id or "",
            parts=[
                UploadedPart(p.part_number, p.etag.strip('"'), p.checksum()) for p in body.parts
            ],
            whole=Checksum("crc64nvme", body.crc64nvme) if body.crc64nvme else None,
        )
    except StoreCallError as e:
        raise completion_refused(e) or await _why_refused(state, upload, body.parts, e.code) from e
    public = file_from_row(state, file, None)
    public.status = FileStatus.PROCESSING  # the store holds the bytes; its event is under way
    return UploadState(
        upload_id=upload.id, file_id=file.id, status=FileStatus.PROCESSING.value, file=public
    )


@router.delete(
    "/{upload_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadState,
    responses=responses(ErrorCode.UPLOAD_NOT_FOUND, ErrorCode.UPLOAD_NOT_ACTIVE),
)
async def cancel_upload(
    upload_id: uuid.UUID, state: StateDep, session: AutocommitSessionDep, tenancy: UploaderDep
) -> UploadState:
    """Aborts an upload: its workflow drops the parts or the object and ends `cancelled`."""
    upload, file = await _owned_upload(session, upload_id, tenancy)
    await request_cancel(state, file)
    return UploadState(upload_id=upload.id, file_id=file.id, status="cancelling")


async def request_cancel(state: AppState, file: File) -> None:
    """Asks the upload's workflow to drop its parts or object and end `cancelled`."""
    if file.status != FileStatus.AWAITING_UPLOAD.value:
        raise Conflict(
            f"This upload's file is {file.status}; only an upload still waiting for its bytes "
            "can be cancelled.",
            code=ErrorCode.UPLOAD_NOT_ACTIVE,
        )
    handle = state.temporal.get_workflow_handle_for(IngestWorkflow.run, file.workflow_id)
    try:
        await handle.signal(IngestWorkflow.cancel)
    except RPCError as e:
        raise ServiceUnavailable("The workflow engine is not reachable; try again shortly.") from e


_PARTS_REFUSED = frozenset(
    ("InvalidPart", "InvalidPartOrder", "EntityTooSmall", "BadDigest", "InvalidRequest")
)


def completion_refused(e: StoreCallError) -> Conflict | ServiceUnavailable | None:
    """What the client hears when the store refused a completion; None when it refused the
    parts, which the caller explains in its own terms."""
    if e.code == "NoSuchUpload":
        return Conflict(
            "This upload is no longer open in the store.", code=ErrorCode.UPLOAD_NOT_ACTIVE
        )
    if e.code in _PARTS_REFUSED:
        return None
    return ServiceUnavailable("The object store did not complete the upload.")


def _missing_parts(missing: list[int]) -> BadRequest:
    return BadRequest(
        f"Part {_numbers(missing)} {'is' if len(missing) == 1 else 'are'} missing: "
        "upload and list every part before completing.",
        code=ErrorCode.MISSING_PARTS,
    )


async def _why_refused(
    state: AppState, upload: Upload, parts: list[CompletedPart], store_code: str | None
) -> ConveyorError:
    """The store refused to complete: its list of parts tells which are missing or differ."""
    held = await held_parts(state, upload)
    if held is None:
        return Conflict(
            "This upload is no longer open in the store.", code=ErrorCode.UPLOAD_NOT_ACTIVE
        )
    held_by_number = {p.part_number: p for p in held}
    missing = sorted({p.part_number for p in parts} - set(held_by_number))
    if missing:
        return _missing_parts(missing)
    mismatched = sorted(
        p.part_number for p in parts if p.etag.strip('"') != held_by_number[p.part_number].etag
    )
    if mismatched:
        return BadRequest(
            f"The etag of part {_numbers(mismatched)} is not the one the store holds.",
            code=ErrorCode.ETAG_MISMATCH,
        )
    if store_code == "BadDigest":
        return BadRequest(
            "The parts the store holds do not match the checksums sent: the file changed "
            "while it was uploaded, or a checksum is wrong.",
            code=ErrorCode.CHECKSUM_MISMATCH,
        )
    return BadRequest(
        f"The store refused to complete the upload ({store_code}).", code=ErrorCode.INVALID_PARTS
    )


OWNED_UPLOAD = (
    select(Upload, File)
    .join(File, File.id == Upload.file_id)
    .where(Upload.id == bindparam("upload_id"), Upload.tenant_id == bindparam("tenant_id"))
)


async def _owned_upload(
    session: AsyncSession, upload_id: uuid.UUID, tenancy: Tenancy
) -> tuple[Upload, File]:
    """The tenant's upload; with an upload token, only one that token created."""
    row = (
        await session.execute(
            OWNED_UPLOAD, {"upload_id": upload_id, "tenant_id": tenancy.tenant_id}
        )
    ).first()
    if row is None or not tokens.may_read(tenancy, row[1]):
        raise NotFound("No such upload.", code=ErrorCode.UPLOAD_NOT_FOUND)
    return row[0], row[1]


async def _owned_multipart(
    session: AsyncSession, upload_id: uuid.UUID, tenancy: Tenancy
) -> tuple[Upload, File]:
    upload, file = await _owned_upload(session, upload_id, tenancy)
    if upload.multipart_upload_id is None:
        raise Conflict(
            "This upload is a single PUT, not a multipart upload.", code=ErrorCode.NOT_MULTIPART
        )
    if upload.part_size is None:
        raise Conflict(
            "This upload's parts are laid out by the browser widget that made it: use its "
            "/v1/uppy routes.",
            code=ErrorCode.NOT_MULTIPART,
        )
    return upload, file


def takes_bytes(upload: Upload, file: File) -> bool:
    """Still waiting for its bytes: not landed (sealed), not ended, not past its expiry."""
    return (
        file.status == FileStatus.AWAITING_UPLOAD.value
        and upload.sealed_at is None
        and upload.expires_at > datetime.now(UTC)
    )


def check_active(upload: Upload, file: File) -> None:
    if not takes_bytes(upload, file):
        status = FileStatus.PROCESSING.value if upload.sealed_at else file.status
        raise Conflict(
            f"This upload's file is {status}: it takes no more parts.",
            code=ErrorCode.UPLOAD_NOT_ACTIVE,
        )


async def _active_multipart(
    session: AsyncSession, upload_id: uuid.UUID, tenancy: Tenancy
) -> tuple[Upload, File]:
    upload, file = await _owned_multipart(session, upload_id, tenancy)
    check_active(upload, file)
    return upload, file


# A file in one of these got its bytes from its upload; cancelled, expired or deleted, the
# upload ended without them (or they are gone).
_LANDED = frozenset(
    s.value
    for s in (FileStatus.PROCESSING, FileStatus.READY, FileStatus.QUARANTINED, FileStatus.FAILED)
)


async def _completed(
    state: AppState, session: AsyncSession, upload: Upload, file: File
) -> UploadState:
    """A repeated completion's answer: the file as it stands."""
    public = await file_public(state, session, file)
    return UploadState(
        upload_id=upload.id, file_id=file.id, status=public.status.value, file=public
    )


async def held_parts(state: AppState, upload: Upload) -> list[StoredPart] | None:
    """The parts the store holds; None when the store no longer knows the upload."""
    try:
        return await asyncio.to_thread(
            list_parts,
            state.s3,
            bucket=upload.bucket,
            key=upload.object_key,
            multipart_upload_id=upload.multipart_upload_id or "",
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "NoSuchUpload":
            return None
        raise ServiceUnavailable("The object store did not list the upload's parts.") from e


async def _create_multipart(
    state: AppState, key: str, content_type: str, checksum_algorithm: ChecksumAlgorithm | None
) -> str:
    try:
        return await state.multipart_calls.create(
            bucket=state.settings.bucket,
            key=key,
            content_type=content_type,
            checksum_algorithm=checksum_algorithm,
        )
    except StoreCallError as e:
        raise ServiceUnavailable("The object store is not reachable; try again shortly.") from e


def _numbers(numbers: list[int], shown: int = 10) -> str:
    listed = ", ".join(str(n) for n in numbers[:shown])
    return listed + (f" and {len(numbers) - shown} more" if len(numbers) > shown else "")


# --- what the browser widget's routes (api/routes/uppy.py) share with these ---------------


async def declare_for_browser(
    state: AppState,
    tenancy: Tenancy,
    filename: str,
    content_type: str,
    method: Literal["POST", "MULTIPART"],
) -> UploadCreated:
    """An upload for a widget that says no size: up to the token's (else the deployment's)
    largest file, that much reserved in the tenant's quota until the bytes are verified."""
    assert tenancy.token is not None
    limit = browser_limit(state, tenancy)
    try:
        body = UploadCreate(filename=filename, size=limit, content_type=content_type)
    except ValidationError as e:
        error = e.errors()[0]
        code = {
            "invalid_filename": ErrorCode.INVALID_FILENAME,
            "invalid_content_type": ErrorCode.INVALID_CONTENT_TYPE,
        }.get(error["type"], ErrorCode.INVALID_REQUEST)
        field = ".".join(str(part) for part in error["loc"])
        raise Unprocessable(f"The {field} {error['msg'].rstrip('.')}.", code=code) from e
    tokens.check_declaration(tenancy.token, 0, content_type, Visibility.PRIVATE)
    async with state.sessions() as transaction:
        await check_quota(
            transaction, tenancy.tenant_id, limit, tenancy.max_bytes, tenancy.max_files
        )
        await tokens.reserve_file(transaction, tenancy.token)
        return await _declare(
            body, state, transaction, tenancy, None, in_transaction=True, browser=method
        )


def browser_limit(state: AppState, tenancy: Tenancy) -> int:
    """The most a widget's upload may be: the token's largest file, else the deployment's."""
    largest = state.settings.max_file_size
    token_max = tenancy.token.max_file_size if tenancy.token else None
    return min(token_max or largest, largest)


async def browser_multipart(
    session: AsyncSession, upload_id: uuid.UUID, tenancy: Tenancy
) -> tuple[Upload, File]:
    """A widget's multipart upload of this token (its parts laid out by the widget)."""
    upload, file = await _owned_upload(session, upload_id, tenancy)
    if upload.multipart_upload_id is None or upload.part_size is not None:
        raise NotFound("No such upload.", code=ErrorCode.UPLOAD_NOT_FOUND)
    return upload, file

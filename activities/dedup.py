"""Dedup stage: claim a blob by SHA-256. The first claimant owns it and runs its stages;
later ones reuse the outcome, and their own object is deleted (never copied)."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from conveyor_core.db.models import Blob, File
from conveyor_core.db.session import transaction
from conveyor_core.types import (
    RETRY_ABANDONED_ERROR,
    BlobRef,
    BlobRole,
    BlobState,
    BlobStatus,
    ClaimInput,
    ClaimResult,
    FileStatus,
    RetryClaimInput,
    StageState,
    StageStatus,
    Thumbnail,
)

BLOB_PROCESSING_ERROR = "BlobProcessing"
BLOB_RELEASING_ERROR = "BlobReleasing"
RETRY_MARK = StageStatus.PENDING.value


def blob_state(blob: Blob) -> BlobState:
    return BlobState(
        blob=BlobRef(
            bucket=blob.bucket,
            key=blob.object_key,
            sha256=blob.sha256,
            size=blob.size,
            content_type=blob.content_type,
            etag=blob.etag,
        ),
        status=BlobStatus(blob.status),
        stages={name: stage_from_json(value) for name, value in blob.stages.items()},
        thumbnails=[Thumbnail(**value) for value in blob.thumbnails],
        public_key=blob.public_key,
    )


def stage_from_json(value: dict[str, Any]) -> StageState:
    return StageState(
        status=StageStatus(value["status"]),
        detail=value.get("detail"),
        duration_ms=value.get("duration_ms"),
    )


def thumbnails_json(thumbnails: list[Thumbnail]) -> list[dict[str, Any]]:
    return [asdict(t) for t in thumbnails]


def _attach_file(session: Session, file_id: uuid.UUID, blob: Blob) -> None:
    """The file references the blob from now on, so a delete of the blob's other files can
    no longer remove its bytes; its verified size and type are the blob's."""
    attached = session.execute(
        update(File)
        .where(File.id == file_id)
        .values(
            sha256=blob.sha256,
            size=blob.size,
            content_type=blob.content_type,
            status=FileStatus.PROCESSING.value,
        )
        .returning(File.id)
    ).first()
    if attached is None:
        # A DEDUPLICATED file's workflow can get here before the API has committed the row
        # (the API starts the workflow first): retry until it is there.
        raise ApplicationError("the file's row is not committed yet", type="FileNotYetVisible")


def _tenant_holds(session: Session, file_id: uuid.UUID, sha256: str) -> bool:
    """Does another file its uploader can read hold these bytes (so it knows of them)? For
    an API key's file, any file of the tenant; for an upload token's, only that token's: a
    browser must not learn what the app's other users uploaded."""
    this = session.execute(
        select(File.tenant_id, File.upload_token_id).where(File.id == file_id)
    ).one_or_none()
    if this is None:
        return False
    query = select(File.id).where(
        File.sha256 == sha256,
        File.tenant_id == this.tenant_id,
        File.id != file_id,
        File.status != FileStatus.DELETED.value,
    )
    if this.upload_token_id is not None:
        query = query.where(File.upload_token_id == this.upload_token_id)
    return session.execute(query.limit(1)).first() is not None


def _retry_committed(file: File, inp: RetryClaimInput) -> bool:
    if inp.previous_status is FileStatus.FAILED:
        return file.status == FileStatus.PROCESSING.value
    return file.status == FileStatus.READY.value and all(
        (file.stages.get(name) or {}).get("status") == RETRY_MARK for name in inp.stages
    )


class DedupActivities:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @activity.defn(name="claim_blob")
    def claim_blob(self, inp: ClaimInput) -> ClaimResult:
        file_id = uuid.UUID(inp.file_id)
        with transaction(self._sessions) as session:
            if inp.existing_only:
                return self._attach(session, file_id, inp.blob.sha256)
            session.execute(
                insert(Blob)
                .values(
                    sha256=inp.blob.sha256,
                    bucket=inp.blob.bucket,
                    object_key=inp.blob.key,
                    size=inp.blob.size,
                    content_type=inp.blob.content_type,
                    etag=inp.blob.etag,
                    status=BlobStatus.PROCESSING.value,
                    owner_file_id=file_id,
                )
                .on_conflict_do_nothing(index_elements=[Blob.sha256])
            )
            blob = session.execute(
                select(Blob).where(Blob.sha256 == inp.blob.sha256).with_for_update()
            ).scalar_one()
            role = self._role(blob, inp)
            _attach_file(session, file_id, blob)
            other_tenant = role is BlobRole.DUPLICATE and not _tenant_holds(
                session, file_id, blob.sha256
            )
            return ClaimResult(role=role, state=blob_state(blob), other_tenant=other_tenant)

    @staticmethod
    def _attach(session: Session, file_id: uuid.UUID, sha256: str) -> ClaimResult:
        blob = session.execute(
            select(Blob).where(Blob.sha256 == sha256).with_for_update()
        ).scalar_one_or_none()
        usable = (BlobStatus.READY.value, BlobStatus.PROCESSING.value, BlobStatus.QUARANTINED.value)
        if blob is None or blob.status not in usable:
            raise ApplicationError(
                "the bytes this upload was deduplicated against are no longer held; upload them",
                type="BlobGone",
                non_retryable=True,
            )
        _attach_file(session, file_id, blob)
        return ClaimResult(role=BlobRole.DUPLICATE, state=blob_state(blob))

    @staticmethod
    def _role(blob: Blob, inp: ClaimInput) -> BlobRole:
        file_id = uuid.UUID(inp.file_id)
        if blob.owner_file_id == file_id:
            return BlobRole.OWNER
        if blob.status == BlobStatus.RELEASING.value:
            # Its removal is under way and would take this upload's derivatives and public
            # copy with it: wait (as retries) until it has ended, then take the blob over.
            raise ApplicationError(
                "the blob's previous bytes are still being removed", type=BLOB_RELEASING_ERROR
            )
        if blob.status == BlobStatus.RELEASED.value:
            # Its bytes are gone: these new ones take its place.
            blob.bucket, blob.object_key, blob.etag = inp.blob.bucket, inp.blob.key, inp.blob.etag
            blob.stages, blob.thumbnails, blob.public_key = {}, [], None
        if blob.status in (BlobStatus.RELEASED.value, BlobStatus.FAILED.value):
            blob.status = BlobStatus.PROCESSING.value
            blob.owner_file_id = file_id
            return BlobRole.OWNER
        return BlobRole.DUPLICATE

    @activity.defn(name="claim_retry")
    def claim_retry(self, inp: RetryClaimInput) -> ClaimResult:
        """A retry run's claim: the file's blob as it is now, owned again (its stages run by
        this run) when its scan had failed, else reused as a duplicate's.

        The API changed the file's row (failed -> processing, or the retried stages of a
        ready file -> pending) in the transaction that started this run, and holds the row
        locked until it commits: the lock taken here waits for that, so a row without the
        change means the API rolled back and this run must not touch anything.
        """
        with transaction(self._sessions) as session:
            file = session.execute(
                select(File).where(File.id == uuid.UUID(inp.file_id)).with_for_update()
            ).scalar_one_or_none()
            if file is None or not _retry_committed(file, inp):
                raise ApplicationError(
                    "the retry was not committed", type=RETRY_ABANDONED_ERROR, non_retryable=True
                )
            blob = session.execute(
                select(Blob).where(Blob.sha256 == inp.sha256).with_for_update()
            ).scalar_one_or_none()
            if blob is None or blob.status in (
                BlobStatus.RELEASING.value,
                BlobStatus.RELEASED.value,
            ):
                raise ApplicationError(
                    f"blob {inp.sha256} is no longer held", type="BlobGone", non_retryable=True
                )
            role = BlobRole.OWNER
            if inp.previous_status is FileStatus.FAILED:
                if blob.status == BlobStatus.FAILED.value:
                    # Its scan failed: this run runs the stages again. Other files holding
                    # it stay failed until retried themselves (they then reuse the outcome).
                    blob.status = BlobStatus.PROCESSING.value
                    blob.owner_file_id = file.id
                elif not (
                    blob.status == BlobStatus.PROCESSING.value and blob.owner_file_id == file.id
                ):
                    # Another upload of the same bytes took it over (or finished it).
                    role = BlobRole.DUPLICATE
            elif blob.status != BlobStatus.READY.value:
                raise ApplicationError(
                    f"blob {inp.sha256} is {blob.status}, not ready",
                    type="BlobGone",
                    non_retryable=True,
                )
            return ClaimResult(role=role, state=blob_state(blob))

    @activity.defn(name="await_blob")
    def await_blob(self, sha256: str) -> BlobState:
        """A duplicate waits (through retries) until the owner has finished the stages."""
        with self._sessions() as session:
            blob = session.get(Blob, sha256)
            if blob is None:
                raise ApplicationError(
                    f"blob {sha256} has no row", type="BlobMissing", non_retryable=True
                )
            state = blob_state(blob)
        if not state.status.is_terminal:
            raise ApplicationError(
                "the blob's stages are still running", type=BLOB_PROCESSING_ERROR
            )
        return state

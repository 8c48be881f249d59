"""Outcome: a file's outcome committed and its webhooks' deliveries enqueued in one
Postgres transaction, run by the ingest workflow as one local activity; and the same for
every file of a ready blob that a re-run gate (the scan) now refuses.

Together, a delivery row exists exactly when the outcome it announces is committed, and a
file costs one transaction and one marker in its history instead of two.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.metadata import insert_events, record_outcome, stages_json
from activities.webhooks import enqueue_deliveries, enqueued
from conveyor_core.db.models import Blob, File, FileEvent
from conveyor_core.db.session import transaction
from conveyor_core.settings import Settings
from conveyor_core.types import (
    BlobStatus,
    CommitInput,
    EnqueueWebhooksResult,
    FileStatus,
    ProgressEvent,
    QuarantinedBlob,
    QuarantineReadyInput,
    Visibility,
)
from observability.metrics import FILES_FINISHED

READY = FileStatus.READY.value
QUARANTINED = FileStatus.QUARANTINED.value
BLOB_SERVED = (BlobStatus.READY.value, BlobStatus.QUARANTINED.value)  # ready, or this retry


class OutcomeActivities:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    @activity.defn(name="commit_outcome")
    def commit_outcome(self, inp: CommitInput) -> EnqueueWebhooksResult:
        """Records the outcome (idempotent) and names the webhook deliveries to start."""
        with transaction(self._sessions) as session:
            finished = record_outcome(session, inp)
            pending = enqueue_deliveries(session, inp.file_id, inp.status)
        if finished:
            FILES_FINISHED.labels(inp.status.value).inc()
        return enqueued(self._settings, pending)

    @activity.defn(name="quarantine_ready_blob")
    def quarantine_ready_blob(self, inp: QuarantineReadyInput) -> QuarantinedBlob:
        """A ready blob that a gate's re-run now refuses (a re-scan with newer signatures):
        the blob and every ready file holding it become quarantined, each file with its
        progress events and its webhooks' deliveries, in one transaction, so no download is
        answered from here on. Moving the bytes and taking the public copy down are the
        workflow's next steps.

        Idempotent: a retry after the commit finds the blob quarantined already and names
        the same files and the same pending deliveries (enqueue_deliveries re-reads them)."""
        with transaction(self._sessions) as session:
            blob = session.execute(
                select(Blob).where(Blob.sha256 == inp.sha256).with_for_update()
            ).scalar_one_or_none()
            if blob is None or blob.status not in BLOB_SERVED:
                return QuarantinedBlob()  # released meanwhile: nothing is served any more
            verdict = {inp.stage: inp.state}
            detail = (inp.state.detail or "")[:1024] or None
            retried = blob.status == BlobStatus.QUARANTINED.value
            blob.status = BlobStatus.QUARANTINED.value
            blob.stages = {**blob.stages, **stages_json(verdict)}
            # This call's files: the ready ones, or on its retry those it quarantined (the
            # same verdict), not files quarantined before by ingest.
            held = session.execute(
                select(File)
                .where(File.sha256 == inp.sha256, File.status.in_((READY, QUARANTINED)))
                .with_for_update()
            ).scalars()
            files = [
                f for f in held if f.status == READY or (retried and f.status_detail == detail)
            ]
            now = datetime.now(UTC)
            for file in files:
                if file.status != READY:
                    continue  # quarantined by this call before its retry
                file.status = QUARANTINED
                file.status_detail = detail
                file.stages = {**file.stages, **stages_json(verdict)}
                file.updated_at = now
                _append_events(session, file.id, inp, now)
            deliveries = [
                d
                for file in files
                for d in enqueue_deliveries(session, str(file.id), FileStatus.QUARANTINED)
            ]
            return QuarantinedBlob(
                quarantined=True,
                quarantine_bucket=self._settings.quarantine_bucket,
                public=any(f.visibility == Visibility.PUBLIC.value for f in files),
                files=sorted(str(f.id) for f in files),
                webhooks=enqueued(self._settings, deliveries),
            )


def _append_events(
    session: Session, file_id: uuid.UUID, inp: QuarantineReadyInput, at: datetime
) -> None:
    """The gate's new outcome, then the file's new status, after the file's last event."""
    last = session.execute(
        select(func.coalesce(func.max(FileEvent.seq), 0)).where(FileEvent.file_id == file_id)
    ).scalar_one()
    when, detail, status = at.isoformat(), inp.state.detail, inp.state.status.value
    insert_events(
        session,
        file_id,
        [
            ProgressEvent(last + 1, "stage", status, when, stage=inp.stage, detail=detail),
            ProgressEvent(last + 2, "status", QUARANTINED, when, detail=detail),
        ],
    )

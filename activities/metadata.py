"""Metadata stage: a file's terminal status (and its blob's outcome) in one idempotent
transaction, a reprocessed or retried stage's new outcome, and the release of a deleted
file's blob."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import (
    DateTime,
    Integer,
    Text,
    Uuid,
    bindparam,
    column,
    delete,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.dedup import thumbnails_json
from conveyor_core.db.models import Blob, BlobText, File, FileEvent
from conveyor_core.db.session import transaction
from conveyor_core.types import (
    FILE_MISSING_ERROR,
    BlobStatus,
    CommitInput,
    FileStatus,
    FinishReleaseInput,
    ObjectRef,
    ProgressEvent,
    RecordStageInput,
    ReleaseInput,
    ReleaseResult,
    StageState,
    Thumbnail,
    Visibility,
)
from observability.metrics import FILES_FINISHED

NON_TERMINAL = (FileStatus.AWAITING_UPLOAD.value, FileStatus.PROCESSING.value)

# A file's events in one statement whose text never changes with their number: a VALUES
# list of one row per event is a new statement (parsed again by psycopg and Postgres) for
# every count, and past 50 parameters psycopg stops caching its parse.
_EVENT_ROWS = (
    func.jsonb_to_recordset(bindparam("events", type_=JSONB))
    .table_valued(
        column("seq", Integer),
        column("kind", Text),
        column("stage", Text),
        column("status", Text),
        column("detail", Text),
        column("at", DateTime(timezone=True)),
    )
    .render_derived(name="event", with_types=True)
)
_INSERT_EVENTS = (
    insert(FileEvent)
    .from_select(
        [
            FileEvent.file_id,
            FileEvent.seq,
            FileEvent.kind,
            FileEvent.stage,
            FileEvent.status,
            FileEvent.detail,
            FileEvent.at,
        ],
        select(
            bindparam("file_id", type_=Uuid),
            _EVENT_ROWS.c.seq,
            _EVENT_ROWS.c.kind,
            _EVENT_ROWS.c.stage,
            _EVENT_ROWS.c.status,
            _EVENT_ROWS.c.detail,
            _EVENT_ROWS.c.at,
        ),
    )
    .on_conflict_do_nothing(index_elements=["file_id", "seq"])
)


def insert_events(session: Session, file_id: uuid.UUID, events: Sequence[ProgressEvent]) -> None:
    """Keeps a file's progress events (those it has already are left as they are)."""
    rows = [{**asdict(e), "detail": (e.detail or "")[:1024] or None} for e in events]
    # On the connection: the ORM would take a dict of parameters for rows to insert.
    session.connection().execute(_INSERT_EVENTS, {"file_id": file_id, "events": rows})


def stages_json(stages: dict[str, StageState]) -> dict[str, Any]:
    return {name: asdict(state) for name, state in stages.items()}


def merged_thumbnails(
    recorded: list[dict[str, Any]], made: list[Thumbnail]
) -> list[dict[str, Any]]:
    """The recorded thumbnails with the ones just made (a made size replaces its record).

    Sizes no longer configured stay: their objects are still held, and the blob's record is
    what removes them with its last reference.
    """
    by_size = {t["size"]: t for t in recorded}
    by_size.update({t.size: asdict(t) for t in made})
    return [by_size[size] for size in sorted(by_size)]


def share_stages(session: Session, sha256: str, stages: dict[str, StageState]) -> None:
    """Stages run once per blob: every ready file holding it shows their new outcome."""
    session.execute(
        update(File)
        .where(File.sha256 == sha256, File.status == FileStatus.READY.value)
        .values(
            stages=File.stages.op("||")(literal(stages_json(stages), JSONB)),
            updated_at=func.now(),
        )
    )


def record_outcome(session: Session, inp: CommitInput) -> bool:
    """Records a file's outcome (its row, events and blob); idempotent. True when this call
    finished the file, False when a retry finds its own earlier commit (or a ready file's
    retried stages were recorded)."""
    if session.get(File, uuid.UUID(inp.file_id)) is None:
        # Checked first: the events' foreign key would fail instead, as a transient
        # error retried forever (DATABASE_RETRY) for a row that will never come.
        raise ApplicationError(
            f"file {inp.file_id} has no row", type=FILE_MISSING_ERROR, non_retryable=True
        )
    if inp.events:
        insert_events(session, uuid.UUID(inp.file_id), inp.events)
    if inp.blob_status is not None and inp.blob_sha256 is not None:
        session.execute(
            update(Blob)
            .where(Blob.sha256 == inp.blob_sha256)
            .values(
                status=inp.blob_status.value,
                stages=stages_json(inp.blob_stages),
                thumbnails=thumbnails_json(inp.thumbnails),
                **({} if inp.metadata is None else {"properties": inp.metadata}),
            )
        )
    if inp.public_key is not None and inp.blob_sha256 is not None:
        session.execute(
            update(Blob).where(Blob.sha256 == inp.blob_sha256).values(public_key=inp.public_key)
        )
    values: dict[str, Any] = {
        "status": inp.status.value,
        "status_detail": inp.detail,
        "stages": stages_json(inp.stages),
        "updated_at": func.now(),
    }
    if inp.status is FileStatus.READY:
        values["ready_at"] = func.now()
    changed = session.execute(
        update(File)
        .where(File.id == uuid.UUID(inp.file_id), File.status.in_(NON_TERMINAL))
        .values(**values)
        .returning(File.id)
    ).first()
    if changed is None:
        if not (inp.retried_stages and _commit_retried_ready_file(session, inp)):
            _require_status(session, inp.file_id, inp.status)
        return False
    return True


class MetadataActivities:
    def __init__(self, sessions: sessionmaker[Session], quarantine_bucket: str) -> None:
        self._sessions = sessions
        self._quarantine_bucket = quarantine_bucket

    @activity.defn(name="commit_file")
    def commit_file(self, inp: CommitInput) -> None:
        with transaction(self._sessions) as session:
            finished = record_outcome(session, inp)
        if finished:
            FILES_FINISHED.labels(inp.status.value).inc()

    @activity.defn(name="record_blob_stage")
    def record_blob_stage(self, inp: RecordStageInput) -> bool:
        """Records a reprocessed stage's outcome on a ready blob and its ready files; False
        when the blob is no longer ready (released meanwhile): nothing to record."""
        with transaction(self._sessions) as session:
            blob = session.execute(
                select(Blob)
                .where(Blob.sha256 == inp.sha256, Blob.status == BlobStatus.READY.value)
                .with_for_update()
            ).scalar_one_or_none()
            if blob is None:
                return False
            blob.stages = {**blob.stages, **stages_json({inp.stage: inp.state})}
            if inp.thumbnails is not None:
                blob.thumbnails = merged_thumbnails(blob.thumbnails, inp.thumbnails)
            if inp.metadata:
                blob.properties = {**blob.properties, **inp.metadata}
            share_stages(session, inp.sha256, {inp.stage: inp.state})
            return True

    @activity.defn(name="release_blob")
    def release_blob(self, inp: ReleaseInput) -> ReleaseResult:
        """Drops a deleted file's reference. The last reference puts the blob in `releasing`
        and names the objects to remove (the bytes, their derivatives, a quarantined copy);
        the last public reference, with private ones left, only takes the public copy down.

        Nothing is released unless the file's row says `deleted` (committed before this runs),
        and the file's row is locked first, so a delete racing a retry or a second delete
        cannot release bytes a live file still needs. Repeated for a blob still `releasing`
        (a cleanup that did not finish), it names the same objects again."""
        with transaction(self._sessions) as session:
            file = session.execute(
                select(File).where(File.id == uuid.UUID(inp.file_id)).with_for_update()
            ).scalar_one_or_none()
            if file is None or file.sha256 is None or file.status != FileStatus.DELETED.value:
                return ReleaseResult(blob_released=False)
            blob = session.execute(
                select(Blob).where(Blob.sha256 == file.sha256).with_for_update()
            ).scalar_one()
            if blob.status == BlobStatus.RELEASED.value:
                return ReleaseResult(blob_released=False, sha256=blob.sha256)
            if blob.status != BlobStatus.RELEASING.value:
                live = (
                    session.execute(
                        select(File.visibility).where(
                            File.sha256 == blob.sha256, File.status != FileStatus.DELETED.value
                        )
                    )
                    .scalars()
                    .all()
                )
                if live:
                    if blob.public_key is None or Visibility.PUBLIC.value in live:
                        return ReleaseResult(blob_released=False, sha256=blob.sha256)
                    # Only private files hold the bytes now: the public copy goes.
                    public_key, blob.public_key = blob.public_key, None
                    return ReleaseResult(
                        blob_released=False,
                        sha256=blob.sha256,
                        public_key=public_key,
                        unpublish_only=True,
                    )
                blob.status = BlobStatus.RELEASING.value
                blob.releasing_at = func.now()
            objects = [ObjectRef(bucket=blob.bucket, key=blob.object_key)]
            objects += [ObjectRef(bucket=t["bucket"], key=t["key"]) for t in blob.thumbnails]
            objects.append(ObjectRef(bucket=self._quarantine_bucket, key=blob.sha256))
            return ReleaseResult(
                blob_released=True,
                sha256=blob.sha256,
                objects=objects,
                public_key=blob.public_key,
            )

    @activity.defn(name="finish_release")
    def finish_release(self, inp: FinishReleaseInput) -> None:
        """The blob's objects are gone: it is `released`, and the next upload of these bytes
        may take it over."""
        with transaction(self._sessions) as session:
            blob = session.execute(
                select(Blob).where(Blob.sha256 == inp.sha256).with_for_update()
            ).scalar_one_or_none()
            if blob is None or blob.status != BlobStatus.RELEASING.value:
                return
            session.execute(delete(BlobText).where(BlobText.sha256 == blob.sha256))
            blob.status = BlobStatus.RELEASED.value
            blob.stages, blob.thumbnails, blob.public_key = {}, [], None
            blob.properties = {}
            blob.owner_file_id = None
            blob.releasing_at = None


def _commit_retried_ready_file(session: Session, inp: CommitInput) -> bool:
    """A ready file's retry of some stages: the file stays ready, and the stages' new outcome
    goes to its blob (if still ready) and every ready file holding it. True when done,
    including when the file was deleted meanwhile (nothing left to record for it)."""
    file = session.execute(
        select(File).where(File.id == uuid.UUID(inp.file_id)).with_for_update()
    ).scalar_one_or_none()
    if file is None or file.status not in (FileStatus.READY.value, FileStatus.DELETED.value):
        return False
    if file.status == FileStatus.DELETED.value or inp.blob_sha256 is None:
        return True
    retried = {name: inp.stages[name] for name in inp.retried_stages if name in inp.stages}
    blob = session.execute(
        select(Blob)
        .where(Blob.sha256 == inp.blob_sha256, Blob.status == BlobStatus.READY.value)
        .with_for_update()
    ).scalar_one_or_none()
    if blob is not None:
        blob.stages = {**blob.stages, **stages_json(retried)}
        if inp.thumbnails:
            blob.thumbnails = merged_thumbnails(blob.thumbnails, inp.thumbnails)
        if inp.metadata:
            blob.properties = {**blob.properties, **inp.metadata}
    file.stages = {**file.stages, **stages_json(inp.stages)}
    share_stages(session, inp.blob_sha256, retried)
    return True


def _require_status(session: Session, file_id: str, wanted: FileStatus) -> None:
    """A retry finding its own earlier commit is fine; anything else is a real conflict."""
    current = session.get(File, uuid.UUID(file_id))
    if current is None:
        raise ApplicationError(
            f"file {file_id} has no row", type=FILE_MISSING_ERROR, non_retryable=True
        )
    if current.status != wanted.value:
        raise ApplicationError(
            f"file {file_id} is already {current.status}, not {wanted.value}",
            type="FileStatusConflict",
            non_retryable=True,
        )

"""The sweeper's activities: what the relay and the workflows did not clean up.

- Objects under `incoming/` that no upload waits for any more (sealed, cancelled, expired,
  failed, deleted, or no upload of ours at all), found by listing rather than by their event:
  the event was lost, or the object came before its key was ours to judge.
- Multipart uploads under such keys, which hold parts (bytes) no one will complete.
- Deletions that did not finish: a blob left `releasing`, a blob no live file holds that was
  never released, a public copy no live public file holds.

Nothing younger than the grace period is touched: a key a client is writing right now, or a
delete whose workflow is running, is left to them. Each run does a bounded batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session, aliased, sessionmaker
from temporalio import activity

from activities.strays import Strays, key_owners
from conveyor_core.db.models import Blob, File, Upload
from conveyor_core.settings import Settings
from conveyor_core.types import (
    INCOMING_PREFIX,
    BlobStatus,
    FileStatus,
    SweepBatchInput,
    SweepCount,
    UnfinishedDeletions,
    Visibility,
)
from observability.metrics import MULTIPART_ABORTED

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

# Listing stops after this many pages (of up to 1,000 entries) in one run.
MAX_PAGES = 100


class SweepActivities:
    def __init__(self, s3: S3Client, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._s3 = s3
        self._sessions = sessions
        self._settings = settings
        self._strays = Strays(s3, sessions)

    def _cutoff(self, inp: SweepBatchInput) -> datetime:
        grace = inp.grace_seconds
        if grace is None:
            grace = self._settings.stray_grace_seconds
        return datetime.now(UTC) - timedelta(seconds=grace)

    @activity.defn(name="sweep_strays")
    def sweep_strays(self, inp: SweepBatchInput) -> SweepCount:
        bucket, cutoff = self._settings.bucket, self._cutoff(inp)
        examined = removed = 0
        for page in self._pages("list_objects_v2", Bucket=bucket, Prefix=INCOMING_PREFIX):
            old = [o["Key"] for o in page.get("Contents", []) if o["LastModified"] < cutoff]
            examined += len(page.get("Contents", []))
            with self._sessions() as session:
                owners = key_owners(session, bucket, old)
            for key in old:
                owner = owners[key]
                if owner.waiting or owner.blob or removed >= inp.limit:
                    continue
                removed += self._strays.remove(bucket, key, found_by="sweeper")
            activity.heartbeat(examined)
            if removed >= inp.limit:
                break
        return SweepCount(examined=examined, removed=removed)

    @activity.defn(name="sweep_multipart_uploads")
    def sweep_multipart_uploads(self, inp: SweepBatchInput) -> SweepCount:
        bucket, cutoff = self._settings.bucket, self._cutoff(inp)
        examined = aborted = 0
        for page in self._pages("list_multipart_uploads", Bucket=bucket, Prefix=INCOMING_PREFIX):
            old = [u for u in page.get("Uploads", []) if u["Initiated"] < cutoff]
            examined += len(page.get("Uploads", []))
            with self._sessions() as session:
                live = dict(
                    session.execute(
                        select(Upload.object_key, Upload.multipart_upload_id)
                        .join(File, File.id == Upload.file_id)
                        .where(
                            Upload.bucket == bucket,
                            Upload.object_key.in_([u["Key"] for u in old]),
                            Upload.sealed_at.is_(None),
                            File.status == FileStatus.AWAITING_UPLOAD.value,
                        )
                    ).all()
                )
            for upload in old:
                # Only the multipart upload a waiting upload was created with is live.
                if live.get(upload["Key"]) == upload["UploadId"] or aborted >= inp.limit:
                    continue
                self._s3.abort_multipart_upload(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
                aborted += 1
                MULTIPART_ABORTED.inc()
                log.warning(
                    "aborted multipart upload %s of %s/%s: its upload takes no more bytes",
                    upload["UploadId"],
                    bucket,
                    upload["Key"],
                )
            activity.heartbeat(examined)
            if aborted >= inp.limit:
                break
        return SweepCount(examined=examined, removed=aborted)

    @activity.defn(name="list_unfinished_deletions")
    def list_unfinished_deletions(self, inp: SweepBatchInput) -> UnfinishedDeletions:
        """One deleted file per blob whose release did not finish, for its delete workflow
        to run again (it is idempotent, and releases only what no live file holds)."""
        cutoff = self._cutoff(inp)
        deleted = aliased(File)
        live = aliased(File)
        held_by_live = exists().where(
            live.sha256 == Blob.sha256, live.status != FileStatus.DELETED.value
        )
        held_by_live_public = exists().where(
            live.sha256 == Blob.sha256,
            live.status != FileStatus.DELETED.value,
            live.visibility == Visibility.PUBLIC.value,
        )
        stuck = and_(
            Blob.status == BlobStatus.RELEASING.value,
            Blob.releasing_at < cutoff,
        )
        never_released = and_(
            Blob.status.notin_((BlobStatus.RELEASING.value, BlobStatus.RELEASED.value)),
            deleted.updated_at < cutoff,
            ~held_by_live,
        )
        public_left = and_(
            Blob.public_key.is_not(None),
            Blob.status != BlobStatus.RELEASING.value,
            deleted.updated_at < cutoff,
            deleted.visibility == Visibility.PUBLIC.value,
            ~held_by_live_public,
        )
        with self._sessions() as session:
            rows = session.execute(
                select(Blob.sha256, deleted.id)
                .join(deleted, deleted.sha256 == Blob.sha256)
                .where(deleted.status == FileStatus.DELETED.value)
                .where(stuck | never_released | public_left)
                .distinct(Blob.sha256)
                .order_by(Blob.sha256, deleted.updated_at.desc())
                .limit(inp.limit)
            ).all()
        file_ids = [str(file_id) for _, file_id in rows]
        if file_ids:
            log.warning("%d deletions did not finish: starting them again", len(file_ids))
        return UnfinishedDeletions(file_ids=file_ids)

    def _pages(self, operation: str, **params: Any) -> Iterator[dict[str, Any]]:
        paginator = self._s3.get_paginator(operation)  # type: ignore[call-overload]
        for number, page in enumerate(paginator.paginate(**params)):
            if number >= MAX_PAGES:
                return
            yield page

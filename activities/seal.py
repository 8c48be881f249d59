"""Seal stage: a landed upload's object moves from its `incoming/` key, which pre-signed URLs
name, to its `sealed/` key, which none can, before anything reads it.

Verify then hashes the sealed object, and every later reader (scan, thumbnails, OCR,
publish, downloads, duplicates in any tenant) reads that same object: bytes that passed
verify can never change. Anything that lands under the incoming key afterwards is a stray
(the relay and the sweeper delete it).
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError
from sqlalchemy import func, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.heartbeat import beating
from conveyor_core.db.models import File, Upload
from conveyor_core.db.session import transaction
from conveyor_core.object_move import ObjectMover, SourceMissing
from conveyor_core.types import FileStatus, SealInput, SealResult

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)


class SealActivities:
    def __init__(self, s3: S3Client, mover: ObjectMover, sessions: sessionmaker[Session]) -> None:
        self._s3 = s3
        self._mover = mover
        self._sessions = sessions

    @activity.defn(name="seal_upload")
    def seal_upload(self, inp: SealInput) -> SealResult:
        # A retry after the move finds the sealed object: never move again, since whatever
        # sits under the incoming key by then is a stray, not this upload's bytes.
        if not self._exists(inp.bucket, inp.sealed_key):
            try:
                with beating():
                    self._mover.move(inp.bucket, inp.incoming_key, inp.sealed_key)
            except SourceMissing:
                return SealResult(landed=False)
        # Marked only after the move: the relay deletes what lands under the incoming key of
        # a sealed upload, and must never take the upload's own bytes for a stray.
        with transaction(self._sessions) as session:
            session.execute(
                update(Upload)
                .where(Upload.id == uuid.UUID(inp.upload_id), Upload.sealed_at.is_(None))
                .values(sealed_at=func.now())
            )
            session.execute(
                update(File)
                .where(
                    File.id == uuid.UUID(inp.file_id),
                    File.status == FileStatus.AWAITING_UPLOAD.value,
                )
                .values(status=FileStatus.PROCESSING.value, updated_at=func.now())
            )
        log.info("sealed %s as %s", inp.incoming_key, inp.sealed_key)
        return SealResult(landed=True)

    def _exists(self, bucket: str, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

"""Strays: objects under `incoming/` that belong to no upload still waiting for its bytes.

Once an upload's bytes landed they are sealed (moved out of every client URL's reach), and
once it was cancelled, expired, failed or deleted it takes no bytes: whatever lands under its
incoming key later (a pre-signed URL used again, a replayed request) is tampering or
leftovers. It never changes a file: the relay deletes it when its event comes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from conveyor_core.db.models import Blob, File, Upload
from conveyor_core.types import INCOMING_PREFIX, FileStatus
from observability.metrics import STRAY_OBJECTS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeyOwner:
    """What the database says of an incoming key."""

    known: bool  # an upload of ours was made for it
    waiting: bool  # that upload still waits for its bytes (not sealed, not ended)
    blob: bool  # a blob's bytes live there (recorded before uploads were sealed)

    @property
    def stray(self) -> bool:
        return self.known and not self.waiting and not self.blob


def key_owners(session: Session, bucket: str, keys: Iterable[str]) -> dict[str, KeyOwner]:
    wanted = list(keys)
    uploads = {
        row.object_key: row
        for row in session.execute(
            select(Upload.object_key, Upload.sealed_at, File.status)
            .join(File, File.id == Upload.file_id)
            .where(Upload.bucket == bucket, Upload.object_key.in_(wanted))
        )
    }
    blobs = set(
        session.execute(
            select(Blob.object_key).where(Blob.bucket == bucket, Blob.object_key.in_(wanted))
        ).scalars()
    )
    owners = {}
    for key in wanted:
        row = uploads.get(key)
        owners[key] = KeyOwner(
            known=row is not None,
            waiting=row is not None
            and row.sealed_at is None
            and row.status == FileStatus.AWAITING_UPLOAD.value,
            blob=key in blobs,
        )
    return owners


class Strays:
    def __init__(self, s3: S3Client, sessions: sessionmaker[Session]) -> None:
        self._s3 = s3
        self._sessions = sessions

    def owner(self, bucket: str, key: str) -> KeyOwner:
        with self._sessions() as session:
            return key_owners(session, bucket, [key])[key]

    def remove(self, bucket: str, key: str, found_by: str) -> bool:
        """Deletes a stray object; True if there was one. Counted and logged as tampering
        when found by its event (someone wrote to a key that takes no more bytes)."""
        if not key.startswith(INCOMING_PREFIX):
            return False
        try:
            head = self._s3.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        self._s3.delete_object(Bucket=bucket, Key=key)
        STRAY_OBJECTS.labels(found_by).inc()
        log.warning(
            "deleted stray object %s/%s (%s bytes, found by %s): its upload takes no more bytes",
            bucket,
            key,
            head.get("ContentLength"),
            found_by,
        )
        return True

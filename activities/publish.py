"""Publish stage: a clean public file gets one server-side copy into the edge's origin bucket,
under its SHA-256, and a CDN URL; unpublishing deletes that copy and purges the edge's cache.

This copy is the one DESIGN.md §5 allows. Content addressing makes it idempotent (a second
publish of the same bytes finds the object and copies nothing) and lets the edge cache a URL
forever: the bytes behind `<edge>/<sha256>` never change, they only go away.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx
from botocore.exceptions import ClientError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import beat, beating
from conveyor_core.db.models import Blob, File
from conveyor_core.db.session import transaction
from conveyor_core.settings import Settings
from conveyor_core.types import (
    BlobRef,
    FileStatus,
    PublishInput,
    PublishResult,
    UnpublishInput,
    Visibility,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)

# Public objects never change under their URL: browsers and CDNs may keep them for a year.
PUBLIC_CACHE_CONTROL = "public, max-age=31536000, immutable"
# CopyObject copies at most 5 GiB (AWS); above that, a multipart copy of ranges (UploadPartCopy).
COPY_OBJECT_MAX_BYTES = 5 * 1024**3
COPY_PART_MIN_BYTES = 512 * 1024**2
MAX_PARTS = 10_000
PURGE_TIMEOUT_SECONDS = 10.0

PUBLISH_SOURCE_MISSING_ERROR = "PublishSourceMissing"
SOURCE_CHANGED_ERROR = "SourceChanged"
INVALID_SHA256_ERROR = "InvalidSha256"

_SHA256 = re.compile(r"[0-9a-f]{64}")

# The public copy is readable straight from the store too (the edge's origin bucket is
# anonymous-read), not only through the edge's safe headers: it is stored with them. Inline
# only for types a browser never runs; anything else (HTML, SVG, ...) a download of
# neutral type. The same list as the edge's own map (workers/stack/templates/nginx.conf).
INLINE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/bmp",
        "image/tiff",
        "image/heic",
        "image/heif",
        "application/pdf",
    }
)
PLAIN_TEXT = "text/plain; charset=utf-8"
UNSCANNED_METADATA = "conveyor-scanned"  # x-amz-meta-conveyor-scanned


class PublicHeaders(NamedTuple):
    content_type: str
    disposition: str
    # x-amz-meta-*: "conveyor-scanned: false" on bytes too large to scan, served unscanned;
    # the edge answers it as X-Conveyor-Scanned (workers/stack/templates/nginx.conf).
    metadata: dict[str, str]


def public_headers(content_type: str, *, scanned: bool = True) -> PublicHeaders:
    """The type, disposition and metadata the public copy is stored (so served) with."""
    metadata = {} if scanned else {UNSCANNED_METADATA: "false"}
    base = content_type.split(";", 1)[0].strip().lower()
    if base == "image/x-ms-bmp":
        base = "image/bmp"
    if base == "text/plain":
        return PublicHeaders(PLAIN_TEXT, "inline", metadata)
    if base in INLINE_TYPES:
        return PublicHeaders(base, "inline", metadata)
    return PublicHeaders("application/octet-stream", "attachment", metadata)


def public_key(sha256: str) -> str:
    """The key of a blob in the public bucket; refuses anything but a SHA-256 in hex."""
    if not _SHA256.fullmatch(sha256):
        raise ApplicationError(
            f"not a SHA-256 in lower-case hex: {sha256!r}",
            type=INVALID_SHA256_ERROR,
            non_retryable=True,
        )
    return sha256


def pinned(blob: BlobRef) -> dict[str, Any]:
    """Copy only the object verify hashed: its sealed key is out of every client's reach,
    and its ETag is checked besides (for blobs recorded with one)."""
    return {"CopySourceIfMatch": blob.etag} if blob.etag else {}


def cdn_url(settings: Settings, sha256: str) -> str:
    return f"{settings.edge_public}/{public_key(sha256)}"


def edge_purge_url(settings: Settings, sha256: str) -> str:
    """The edge's purge endpoint for `<edge>/<sha256>` (workers/stack/templates/nginx.conf):
    its cache key is the URI path, named on disk by the key's MD5."""
    cache_key = f"/{public_key(sha256)}"
    digest = hashlib.md5(cache_key.encode(), usedforsecurity=False).hexdigest()
    return f"{settings.edge}/_purge/{digest}"


class PublishActivities:
    def __init__(
        self,
        s3: S3Client,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        copy_object_max_bytes: int = COPY_OBJECT_MAX_BYTES,
        copy_part_min_bytes: int = COPY_PART_MIN_BYTES,
    ) -> None:
        self._s3 = s3
        self._settings = settings
        self._sessions = sessions
        self._copy_object_max_bytes = copy_object_max_bytes
        self._copy_part_min_bytes = copy_part_min_bytes

    @activity.defn(name="publish_blob")
    def publish_blob(self, inp: PublishInput) -> PublishResult:
        blob = inp.blob
        key = public_key(blob.sha256)
        bucket = self._settings.public_bucket
        served = public_headers(blob.content_type, scanned=inp.scanned)
        if self._published_size(bucket, key) != blob.size:
            try:
                if blob.size <= self._copy_object_max_bytes:
                    with beating():
                        self._s3.copy_object(
                            Bucket=bucket,
                            Key=key,
                            CopySource={"Bucket": blob.bucket, "Key": blob.key},
                            CacheControl=PUBLIC_CACHE_CONTROL,
                            MetadataDirective="REPLACE",
                            ContentType=served.content_type,
                            ContentDisposition=served.disposition,
                            Metadata=served.metadata,
                            **pinned(blob),
                        )
                else:
                    self._multipart_copy(blob, bucket, key, served)
            except ClientError as e:
                if _code(e) in ("NoSuchKey", "404", "NotFound"):
                    raise ApplicationError(
                        "the object is no longer in the store",
                        type=PUBLISH_SOURCE_MISSING_ERROR,
                        non_retryable=True,
                    ) from e
                if _code(e) == "PreconditionFailed":
                    raise ApplicationError(
                        f"the object is no longer the one verified (ETag {blob.etag}): "
                        "not published",
                        type=SOURCE_CHANGED_ERROR,
                        non_retryable=True,
                    ) from e
                raise
            # The edge may hold a short-lived 404 for this URL (asked for before, or after an
            # unpublish): forget it, so the URL serves the bytes from now on.
            self._purge_edge(blob.sha256)
        return PublishResult(public_key=key, cdn_url=cdn_url(self._settings, blob.sha256))

    @activity.defn(name="unpublish_blob")
    def unpublish_blob(self, inp: UnpublishInput) -> None:
        """Takes the public copy down, unless a public file holds the bytes again.

        Done under the blob's row lock, which a new upload's claim of the same bytes takes
        too: a public duplicate claimed before this keeps the copy (it is live and public),
        one claimed after finds no copy and publishes its own. Without the lock, a duplicate
        could find the copy about to go, keep it, and end with a dead CDN URL."""
        key = public_key(inp.sha256)
        with transaction(self._sessions) as session:
            session.execute(select(Blob.sha256).where(Blob.sha256 == inp.sha256).with_for_update())
            if _public_file_holds(session, inp.sha256):
                log.info("public copy of %s kept: a public file holds it again", inp.sha256)
                return
            # The object first: purged before, a GET in between would cache it again.
            self._s3.delete_object(Bucket=self._settings.public_bucket, Key=key)
            self._purge_edge(inp.sha256)

    def _purge_edge(self, sha256: str) -> None:
        response = httpx.delete(
            edge_purge_url(self._settings, sha256), timeout=PURGE_TIMEOUT_SECONDS
        )
        # 204: purged; 404: the edge had nothing cached for it. Anything else is retried.
        if response.status_code not in (204, 404):
            raise RuntimeError(
                f"edge purge answered {response.status_code}: {response.text[:200]!r}"
            )

    def _published_size(self, bucket: str, key: str) -> int | None:
        try:
            return self._s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
        except ClientError as e:
            if _code(e) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def _multipart_copy(self, blob: BlobRef, bucket: str, key: str, served: PublicHeaders) -> None:
        """A server-side copy in ranges, for objects CopyObject cannot copy in one request."""
        part_size = max(self._copy_part_min_bytes, math.ceil(blob.size / MAX_PARTS))
        upload_id = self._s3.create_multipart_upload(
            Bucket=bucket,
            Key=key,
            CacheControl=PUBLIC_CACHE_CONTROL,
            ContentType=served.content_type,
            ContentDisposition=served.disposition,
            Metadata=served.metadata,
        )["UploadId"]
        try:
            parts: list[CompletedPartTypeDef] = []
            for number, start in enumerate(range(0, blob.size, part_size), start=1):
                end = min(start + part_size, blob.size) - 1
                with beating():
                    copied = self._s3.upload_part_copy(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource={"Bucket": blob.bucket, "Key": blob.key},
                        CopySourceRange=f"bytes={start}-{end}",
                        **pinned(blob),
                    )
                parts.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
                beat(end + 1)
            self._s3.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            self._s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise


# A file in one of these never serves its bytes again: it holds no public copy.
_NEVER_SERVED = (FileStatus.DELETED.value, FileStatus.QUARANTINED.value)


def _public_file_holds(session: Session, sha256: str) -> bool:
    return (
        session.execute(
            select(File.id)
            .where(
                File.sha256 == sha256,
                File.visibility == Visibility.PUBLIC.value,
                File.status.notin_(_NEVER_SERVED),
            )
            .limit(1)
        ).first()
        is not None
    )


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))

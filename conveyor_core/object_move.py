"""Moving an object to another key of the same bucket, as cheaply as the store allows.

An upload's bytes are moved from the key its pre-signed URLs name to a key none can, the
moment they land (DESIGN: bytes written once, never copied on the hot path). SeaweedFS's
filer renames an entry without touching its data (about 75 ms whatever the size, measured
here for 1 KB and 256 MiB); S3 has no rename, so other stores copy server-side and delete the source
(on SeaweedFS that rewrites the data, about 3-5 s per GiB: used only where no rename exists).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

import httpx
import jwt
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from conveyor_core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

FILER_TOKEN_SECONDS = 60
FILER_TIMEOUT_SECONDS = 30.0


class SourceMissing(Exception):
    """Nothing under the source key."""


class ObjectMover(Protocol):
    def move(self, bucket: str, source: str, target: str) -> None:
        """Moves `source` to `target` (replacing it); SourceMissing when there is nothing."""


class FilerRename:
    """SeaweedFS: the filer's rename (`POST <target>?mv.from=<source>`), metadata only.

    Signed with the filer's JWT key when the filer has one (the local stack always does:
    without it the filer port would let anyone on the host write any object)."""

    def __init__(self, filer_url: str, jwt_key: str | None) -> None:
        self._filer = filer_url.rstrip("/")
        self._jwt_key = jwt_key
        self._http = httpx.Client(timeout=FILER_TIMEOUT_SECONDS, trust_env=False)

    def move(self, bucket: str, source: str, target: str) -> None:
        headers = {}
        if self._jwt_key:
            claims = {"exp": int(time.time()) + FILER_TOKEN_SECONDS}
            headers["Authorization"] = "Bearer " + jwt.encode(claims, self._jwt_key, "HS256")
        response = self._http.post(
            f"{self._filer}{_filer_path(bucket, target)}",
            params={"mv.from": f"/buckets/{bucket}/{source}"},
            headers=headers,
        )
        if response.status_code == 400 and "no entry is found" in response.text:
            raise SourceMissing(source)
        if response.status_code >= 300:
            raise RuntimeError(
                f"filer rename of {source} answered {response.status_code}: {response.text[:200]}"
            )


class CopyThenDelete:
    """Any S3 store: a server-side copy (multipart above 5 GiB), then the source goes."""

    def __init__(self, s3: S3Client) -> None:
        self._s3 = s3

    def move(self, bucket: str, source: str, target: str) -> None:
        try:
            self._s3.copy(
                {"Bucket": bucket, "Key": source},
                bucket,
                target,
                Config=TransferConfig(multipart_threshold=5 * 1024**3, use_threads=False),
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise SourceMissing(source) from e
            raise
        self._s3.delete_object(Bucket=bucket, Key=source)


def _filer_path(bucket: str, key: str) -> str:
    return quote(f"/buckets/{bucket}/{key}", safe="/")


def make_object_mover(settings: Settings, s3: S3Client) -> ObjectMover:
    if settings.store_move == "filer_rename":
        key = settings.swfs_filer_jwt_key
        return FilerRename(settings.swfs_filer, key.get_secret_value() if key else None)
    return CopyThenDelete(s3)

"""Object-store side effects around an upload: reconcile probe (HEAD), cleanup, quarantine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError
from temporalio import activity

from activities.heartbeat import beating
from conveyor_core.types import (
    DeleteObjectsInput,
    DiscardInput,
    ObjectProbe,
    ObjectRef,
    QuarantineInput,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def _is_not_found(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


def derivatives_prefix(sha256: str) -> str:
    return f"derivatives/{sha256}/"


class StoreActivities:
    def __init__(self, s3: S3Client) -> None:
        self._s3 = s3

    @activity.defn(name="probe_object")
    def probe_object(self, ref: ObjectRef) -> ObjectProbe:
        """Reconcile: has the object landed even though no event said so?"""
        try:
            head = self._s3.head_object(Bucket=ref.bucket, Key=ref.key)
        except ClientError as e:
            if _is_not_found(e):
                return ObjectProbe(exists=False)
            raise
        return ObjectProbe(exists=True, size=head["ContentLength"])

    @activity.defn(name="delete_object")
    def delete_object(self, ref: ObjectRef) -> None:
        """Removes an abandoned, rejected or duplicate upload's object; deleting nothing is fine."""
        self._s3.delete_object(Bucket=ref.bucket, Key=ref.key)

    @activity.defn(name="discard_upload")
    def discard_upload(self, inp: DiscardInput) -> None:
        """An expired or cancelled upload: abort its multipart (dropping the parts) and
        delete whatever object landed. Both are idempotent."""
        if inp.multipart_upload_id is not None:
            try:
                self._s3.abort_multipart_upload(
                    Bucket=inp.object.bucket,
                    Key=inp.object.key,
                    UploadId=inp.multipart_upload_id,
                )
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "NoSuchUpload":
                    raise
        self._s3.delete_object(Bucket=inp.object.bucket, Key=inp.object.key)

    @activity.defn(name="delete_objects")
    def delete_objects(self, inp: DeleteObjectsInput) -> None:
        for ref in inp.objects:
            self._s3.delete_object(Bucket=ref.bucket, Key=ref.key)

    @activity.defn(name="quarantine_object")
    def quarantine_object(self, inp: QuarantineInput) -> None:
        """Moves infected bytes out of every client's reach and drops their derivatives.

        Idempotent: a retry after the copy finds the source gone and the copy in place.
        """
        blob = inp.blob
        try:
            with beating():
                self._s3.copy_object(
                    Bucket=inp.quarantine_bucket,
                    Key=blob.sha256,
                    CopySource={"Bucket": blob.bucket, "Key": blob.key},
                )
        except ClientError as e:
            if not _is_not_found(e):
                raise
            self._s3.head_object(Bucket=inp.quarantine_bucket, Key=blob.sha256)
        self._s3.delete_object(Bucket=blob.bucket, Key=blob.key)
        listed = self._s3.list_objects_v2(
            Bucket=blob.bucket, Prefix=derivatives_prefix(blob.sha256)
        )
        for item in listed.get("Contents", []):
            self._s3.delete_object(Bucket=blob.bucket, Key=item["Key"])

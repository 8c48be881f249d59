"""Object-store side effects around an upload: reconcile probe (HEAD) and cleanup."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError
from temporalio import activity

from conveyor_core.types import ObjectProbe, ObjectRef

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def _is_not_found(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


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
        """Removes an abandoned or rejected upload's object; deleting nothing is fine."""
        self._s3.delete_object(Bucket=ref.bucket, Key=ref.key)

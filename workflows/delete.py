"""DeleteFileWorkflow: id `delete-<file_id>`, started when a file is deleted.

The file's row is already `deleted`; this drops its reference to the blob and, with the
last reference, removes the bytes, their derivatives and the public copy (purging the edge).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.metadata import MetadataActivities
    from activities.store import StoreActivities
    from conveyor_core.types import (
        DeleteFileInput,
        DeleteObjectsInput,
        ReleaseInput,
        ReleaseResult,
        UnpublishInput,
    )
    from workflows.ingest import DATABASE_RETRY, STORE_RETRY


def delete_workflow_id(file_id: str) -> str:
    return f"delete-{file_id}"


@workflow.defn
class DeleteFileWorkflow:
    @workflow.run
    async def run(self, inp: DeleteFileInput) -> ReleaseResult:
        released = await workflow.execute_activity_method(
            MetadataActivities.release_blob,
            ReleaseInput(file_id=inp.file_id),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DATABASE_RETRY,
        )
        if not released.blob_released:
            return released
        if released.public_key is not None and released.sha256 is not None:
            await workflow.execute_activity(
                "unpublish_blob",
                UnpublishInput(sha256=released.sha256),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=STORE_RETRY,
            )
        await workflow.execute_activity_method(
            StoreActivities.delete_objects,
            DeleteObjectsInput(objects=released.objects),
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=STORE_RETRY,
        )
        return released

"""DeleteFileWorkflow: id `delete-<file_id>`, started when a file is deleted.

The file's row is already `deleted` (committed before this starts); this drops its reference
to the blob and, with the last reference, removes the bytes, their derivatives and the public
copy (purging the edge), then marks the blob released. The last public reference alone takes
the public copy down. A delete that did not finish is started again by the sweeper.
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
        FinishReleaseInput,
        ReleaseInput,
        ReleaseResult,
        UnpublishInput,
    )
    from workflows.ingest import DATABASE_RETRY, STORE_RETRY


# A release ends with the blob marked released, once its objects are gone (before, it was
# marked released before they went, and a new upload could take it over meanwhile).
FINISH_RELEASE_PATCH = "finish-release"


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
        if released.unpublish_only and released.sha256 is not None:
            await self._unpublish(released.sha256)
            return released
        if not released.blob_released:
            return released
        if released.public_key is not None and released.sha256 is not None:
            await self._unpublish(released.sha256)
        await workflow.execute_activity_method(
            StoreActivities.delete_objects,
            DeleteObjectsInput(objects=released.objects),
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=STORE_RETRY,
        )
        if released.sha256 is not None and workflow.patched(FINISH_RELEASE_PATCH):
            await workflow.execute_activity_method(
                MetadataActivities.finish_release,
                FinishReleaseInput(sha256=released.sha256),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=DATABASE_RETRY,
            )
        return released

    async def _unpublish(self, sha256: str) -> None:
        await workflow.execute_activity(
            "unpublish_blob",
            UnpublishInput(sha256=sha256),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=STORE_RETRY,
        )

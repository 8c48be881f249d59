"""What an operator sees in Temporal: every upload findable by file, tenant and status."""

from __future__ import annotations

import httpx
from temporalio.client import Client

from tests.helpers import assert_eventually
from tests.integration.uploads import declare, put, sample_bytes, wait_for_status
from workflows import search_attributes


async def test_uploads_are_searchable_by_file_tenant_and_status(
    api: httpx.AsyncClient, key_a: str, temporal: Client
) -> None:
    content = sample_bytes(800)
    created = await declare(api, key_a, content)
    assert (await put(created, content)).status_code == 200
    file = await wait_for_status(api, key_a, created["file_id"], "ready")
    waiting = await declare(api, key_a, sample_bytes(800))

    async def listed(query: str) -> list[str]:
        return [w.id async for w in temporal.list_workflows(query)]

    async def ready_is_found() -> None:
        query = f'ConveyorFileId = "{file["id"]}" AND ConveyorStatus = "ready"'
        assert await listed(query) == [file["workflow_id"]]
        waiting_query = (
            f'ConveyorStatus = "awaiting_upload" AND ConveyorFileId = "{waiting["file_id"]}"'
        )
        assert await listed(waiting_query) == [f"ingest-{waiting['file_id']}"]

    await assert_eventually(ready_is_found, timeout=20)
    description = await temporal.get_workflow_handle(file["workflow_id"]).describe()
    attributes = description.typed_search_attributes
    assert attributes.get(search_attributes.TENANT) is not None
    assert attributes.get(search_attributes.STATUS) == "ready"

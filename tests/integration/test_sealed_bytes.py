"""Verified bytes never change: the attacks of an uploader who keeps its pre-signed URL."""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select
from temporalio.client import Client

from conveyor_core.db.models import Blob, Upload
from conveyor_core.settings import Settings
from tests.helpers import assert_eventually
from tests.integration import samples
from tests.integration.uploads import (
    auth,
    put,
    put_multipart,
    upload,
    wait_for_status,
    wait_until_terminal,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The EICAR test string: every scanner reports it as infected.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
CLEAN = (b"an ordinary clean text file " * 3)[: len(EICAR)]


async def _content(api: httpx.AsyncClient, key: str, file_id: str) -> bytes:
    response = await api.get(f"/v1/files/{file_id}/content", headers=auth(key))
    assert response.status_code == 307, response.text
    async with httpx.AsyncClient(timeout=30) as client:
        got = await client.get(response.headers["location"])
    assert got.status_code == 200
    return got.content


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


async def test_overwrite_after_ready_changes_nothing(
    api: httpx.AsyncClient, key_a: str, stack: Settings, s3: Any, sessions: Any
) -> None:
    idempotency = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"filename": "clean.txt", "size": len(CLEAN), "content_type": "text/plain"}
    response = await api.post("/v1/uploads", json=body, headers=auth(key_a) | idempotency)
    assert response.status_code == 201, response.text
    created = response.json()
    assert (await put(created, CLEAN)).status_code == 200
    ready = await wait_for_status(api, key_a, created["file_id"], "ready")
    with sessions() as session:
        upload = session.execute(
            select(Upload).where(Upload.id == uuid.UUID(created["upload_id"]))
        ).scalar_one()
        blob = session.get(Blob, ready["sha256"])
        incoming = upload.object_key
        assert upload.sealed_at is not None
        assert blob is not None and blob.object_key.startswith("sealed/")

    # The attack: the same, still valid URL takes other bytes of the same length.
    assert (await put(created, EICAR)).status_code == 200

    async def stray_removed() -> None:
        assert not _exists(s3, stack.bucket, incoming)

    await assert_eventually(stray_removed, timeout=30)
    after = await wait_for_status(api, key_a, created["file_id"], "ready")
    assert after["sha256"] == hashlib.sha256(CLEAN).hexdigest()
    assert await _content(api, key_a, created["file_id"]) == CLEAN

    # Replaying the create signs nothing once the bytes landed.
    replay = await api.post("/v1/uploads", json=body, headers=auth(key_a) | idempotency)
    assert replay.status_code == 201, replay.text
    assert replay.headers["Idempotent-Replayed"] == "true"
    replayed = replay.json()
    assert replayed["file_id"] == created["file_id"]
    assert replayed["url"] is None and replayed["parts"] == []
    assert replayed["status"] == "ready"


async def test_put_after_cancel_is_removed(
    api: httpx.AsyncClient, key_a: str, stack: Settings, s3: Any, sessions: Any
) -> None:
    body = {"filename": "late.txt", "size": len(CLEAN), "content_type": "text/plain"}
    response = await api.post("/v1/uploads", json=body, headers=auth(key_a))
    created = response.json()
    cancel = await api.delete(f"/v1/uploads/{created['upload_id']}", headers=auth(key_a))
    assert cancel.status_code == 202, cancel.text
    await wait_for_status(api, key_a, created["file_id"], "cancelled")
    with sessions() as session:
        incoming = session.execute(
            select(Upload.object_key).where(Upload.id == uuid.UUID(created["upload_id"]))
        ).scalar_one()
    # The URL is still within its lifetime: the store takes the bytes, the relay drops them.
    assert (await put(created, EICAR)).status_code == 200

    async def stray_removed() -> None:
        assert not _exists(s3, stack.bucket, incoming)

    await assert_eventually(stray_removed, timeout=30)
    after = await api.get(f"/v1/files/{created['file_id']}", headers=auth(key_a))
    assert after.json()["status"] == "cancelled"


async def test_parts_are_not_signed_once_the_bytes_landed(
    api: httpx.AsyncClient, key_a: str, stack: Settings
) -> None:
    content = os.urandom(stack.multipart_threshold + 1)
    response = await api.post(
        "/v1/uploads",
        json={"filename": "big.bin", "size": len(content), "content_type": "text/plain"},
        headers=auth(key_a),
    )
    created = response.json()
    assert created["method"] == "MULTIPART", created
    await put_multipart(api, key_a, created, content)
    await wait_until_terminal(api, key_a, created["file_id"])
    # The attack: fresh part URLs for the same upload, to write other bytes.
    again = await api.post(
        f"/v1/uploads/{created['upload_id']}/parts",
        json={"part_numbers": [1]},
        headers=auth(key_a),
    )
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "upload_not_active"


async def test_a_delete_racing_a_new_upload_of_the_same_bytes_takes_nothing_of_it(
    api: httpx.AsyncClient, key_a: str, key_b: str, temporal: Client
) -> None:
    content = samples.text_image("DELETED THEN UPLOADED AGAIN")
    first = await upload(api, key_a, content, content_type="image/png")
    assert first["status"] == "ready" and first["thumbnails"]
    deleted = await api.delete(f"/v1/files/{first['id']}", headers=auth(key_a))
    assert deleted.status_code == 204, deleted.text
    # At once, while the release of the bytes may still be under way.
    second = await upload(api, key_b, content, content_type="image/png")
    assert second["status"] == "ready" and second["thumbnails"], second
    await temporal.get_workflow_handle(f"delete-{first['id']}").result()

    # Whatever order they ran in, the new file keeps its bytes and derivatives.
    now = (await api.get(f"/v1/files/{second['id']}", headers=auth(key_b))).json()
    assert now["status"] == "ready" and now["thumbnails"]
    assert await _content(api, key_b, second["id"]) == content
    async with httpx.AsyncClient(timeout=30) as client:
        for thumbnail in now["thumbnails"]:
            assert (await client.get(thumbnail["url"])).status_code == 200, thumbnail

"""A create sent again with the same `Idempotency-Key` (its answer lost on the way) answers
the upload the first one made, against the real API, store and database."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from conveyor_core.db.models import File, Upload
from conveyor_core.settings import Settings
from tests.integration.conftest import create_key, run_cli
from tests.integration.uploads import auth, sample_bytes, upload

MIB = 1024 * 1024


async def create(
    api: httpx.AsyncClient, key: str, body: dict[str, Any], idempotency_key: str
) -> httpx.Response:
    return await api.post(
        "/v1/uploads", json=body, headers={**auth(key), "Idempotency-Key": idempotency_key}
    )


def multipart_body(content: bytes) -> dict[str, Any]:
    first = base64.b64encode(hashlib.sha256(content[: 8 * MIB]).digest()).decode()
    return {
        "filename": "keyed.bin",
        "size": len(content),
        "content_type": "application/octet-stream",
        "part_checksum": "sha256",
        "parts": [{"part_number": 1, "sha256": first}],
    }


async def test_the_same_key_answers_the_same_upload_and_the_upload_goes_on(
    api: httpx.AsyncClient, key_a: str, key_b: str
) -> None:
    content = os.urandom(40 * MIB)
    body, idempotency_key = multipart_body(content), str(uuid.uuid4())
    first = await create(api, key_a, body, idempotency_key)
    again = await create(api, key_a, body, idempotency_key)

    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    made, replayed = first.json(), again.json()
    for field in ("upload_id", "file_id", "method", "part_size", "part_count", "expires_at"):
        assert replayed[field] == made[field], field
    # The replayed answer's part URL (signed afresh) takes the bytes.
    [part] = replayed["parts"]
    stored = httpx.put(part["url"], content=content[: 8 * MIB], headers=part["headers"])
    assert stored.status_code == 200, stored.text
    held = (await api.get(f"/v1/uploads/{made['upload_id']}", headers=auth(key_a))).json()
    assert [p["part_number"] for p in held["parts"]] == [1]

    other = await create(api, key_a, {**body, "filename": "other.bin"}, idempotency_key)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    for bad in ("", "has space", "k" * 256):
        refused = await create(api, key_a, body, bad)
        assert refused.status_code == 422, bad
        assert refused.json()["error"]["code"] == "invalid_request"
    # Keys are each tenant's own.
    theirs = await create(api, key_b, body, idempotency_key)
    assert theirs.status_code == 201 and theirs.json()["upload_id"] != made["upload_id"]
    for key, created in ((key_a, made), (key_b, theirs.json())):
        await api.delete(f"/v1/uploads/{created['upload_id']}", headers=auth(key))


async def test_concurrent_requests_with_one_key_make_one_upload(
    api: httpx.AsyncClient, stack: Settings, s3: Any, sessions: Any
) -> None:
    key = create_key(stack, f"idempotency-{uuid.uuid4().hex[:8]}")
    body = multipart_body(os.urandom(40 * MIB))
    idempotency_key = str(uuid.uuid4())

    answers = await asyncio.gather(*(create(api, key, body, idempotency_key) for _ in range(6)))

    assert [a.status_code for a in answers] == [201] * 6, [a.text for a in answers]
    [upload_id] = {a.json()["upload_id"] for a in answers}
    assert sum("idempotent-replayed" in a.headers for a in answers) == 5
    with sessions() as session:
        row = session.get(Upload, uuid.UUID(upload_id))
        files = session.scalar(select(func.count()).where(File.tenant_id == row.tenant_id))
    assert files == 1
    # The requests that lost the race aborted the multipart uploads they had made.
    prefix = f"incoming/{row.tenant_id}/"
    open_uploads = s3.list_multipart_uploads(Bucket=stack.bucket, Prefix=prefix).get("Uploads")
    assert [u["Key"] for u in open_uploads] == [row.object_key]
    await api.delete(f"/v1/uploads/{upload_id}", headers=auth(key))


async def test_a_repeat_is_not_counted_against_the_quota_and_replays_deduplicated(
    api: httpx.AsyncClient, stack: Settings
) -> None:
    tenant = f"idempotency-{uuid.uuid4().hex[:8]}"
    key = create_key(stack, tenant)
    content = sample_bytes(3000)
    ready = await upload(api, key, content, content_type="text/plain")
    assert ready["status"] == "ready", ready
    run_cli(stack, "tenants", "limits", tenant, "--max-files", "2")

    body = {
        "filename": "again.txt",
        "size": len(content),
        "content_type": "text/plain",
        "sha256": hashlib.sha256(content).hexdigest(),
    }
    idempotency_key = str(uuid.uuid4())
    first = await create(api, key, body, idempotency_key)
    assert first.status_code == 201 and first.json()["method"] == "DEDUPLICATED", first.text
    # The tenant is at its 2 files now; the same request again is answered, not refused.
    again = await create(api, key, body, idempotency_key)
    assert again.status_code == 201, again.text
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    another = await create(api, key, body, str(uuid.uuid4()))
    assert another.status_code == 413
    assert another.json()["error"]["code"] == "file_quota_exceeded"


async def test_concurrent_repeats_at_the_quota_are_answered_not_refused(
    api: httpx.AsyncClient, stack: Settings
) -> None:
    tenant = f"idempotency-{uuid.uuid4().hex[:8]}"
    key = create_key(stack, tenant)
    run_cli(stack, "tenants", "limits", tenant, "--max-files", "1")
    body = {"filename": "one.txt", "size": 10, "content_type": "text/plain"}
    idempotency_key = str(uuid.uuid4())

    answers = await asyncio.gather(*(create(api, key, body, idempotency_key) for _ in range(4)))

    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert len({a.json()["upload_id"] for a in answers}) == 1

"""Multipart uploads through the API against the real store: parts signed on demand, resume
information, per-part integrity, completion errors, abort and expiry."""

from __future__ import annotations

import hashlib
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy

from conveyor_core.db.models import Upload
from conveyor_core.settings import Settings
from conveyor_core.types import IngestInput
from tests.integration.uploads import auth, b64_crc64, b64_sha256, wait_until_terminal
from workflows.ingest import IngestWorkflow

MIB = 1024 * 1024


def parts_of(content: bytes, part_size: int) -> dict[int, bytes]:
    return {
        i + 1: content[offset : offset + part_size]
        for i, offset in enumerate(range(0, len(content), part_size))
    }


async def _create(api: httpx.AsyncClient, key: str, content: bytes) -> dict[str, Any]:
    response = await api.post(
        "/v1/uploads",
        json={
            "filename": "big.bin",
            "size": len(content),
            "content_type": "application/octet-stream",
            "sha256": hashlib.sha256(content).hexdigest(),
        },
        headers=auth(key),
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["method"] == "MULTIPART"
    return created


async def _sign(
    api: httpx.AsyncClient, key: str, upload_id: str, parts: dict[int, bytes]
) -> dict[int, dict[str, Any]]:
    response = await api.post(
        f"/v1/uploads/{upload_id}/parts",
        json={"parts": [{"part_number": n, "sha256": b64_sha256(d)} for n, d in parts.items()]},
        headers=auth(key),
    )
    assert response.status_code == 200, response.text
    return {p["part_number"]: p for p in response.json()["parts"]}


def _put_parts(signed: dict[int, dict[str, Any]], parts: dict[int, bytes]) -> dict[int, str]:
    def put(number: int) -> tuple[int, str]:
        response = httpx.put(
            signed[number]["url"],
            content=parts[number],
            headers=signed[number]["headers"],
            timeout=60,
        )
        assert response.status_code == 200, response.text
        return number, response.headers["etag"].strip('"')

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(put, parts))


async def test_64_mib_multipart_reaches_ready_with_resume_information(
    api: httpx.AsyncClient, key_a: str
) -> None:
    content = os.urandom(64 * MIB)
    created = await _create(api, key_a, content)
    assert created["part_size"] == 8 * MIB and created["part_count"] == 8
    parts = parts_of(content, created["part_size"])
    first = {n: parts[n] for n in (1, 2, 3)}
    etags = _put_parts(await _sign(api, key_a, created["upload_id"], first), first)

    state = (await api.get(f"/v1/uploads/{created['upload_id']}", headers=auth(key_a))).json()
    assert state["status"] == "awaiting_upload" and state["part_count"] == 8
    assert [(p["part_number"], p["size"], p["etag"]) for p in state["parts"]] == [
        (n, 8 * MIB, etags[n]) for n in (1, 2, 3)
    ]

    rest = {n: parts[n] for n in range(4, 9)}
    etags |= _put_parts(await _sign(api, key_a, created["upload_id"], rest), rest)
    completed = await api.post(
        f"/v1/uploads/{created['upload_id']}/complete",
        json={
            "parts": [
                {"part_number": n, "etag": e, "sha256": b64_sha256(parts[n])}
                for n, e in etags.items()
            ]
        },
        headers=auth(key_a),
    )
    assert completed.status_code == 200, completed.text
    file = await wait_until_terminal(api, key_a, created["file_id"], timeout=120)
    assert file["status"] == "ready", file
    assert file["sha256"] == hashlib.sha256(content).hexdigest() and file["size"] == 64 * MIB


async def test_part_urls_refuse_other_sizes_and_corrupted_bytes(
    api: httpx.AsyncClient, key_a: str
) -> None:
    content = os.urandom(40 * MIB)
    created = await _create(api, key_a, content)
    parts = parts_of(content, created["part_size"])
    signed = await _sign(api, key_a, created["upload_id"], {1: parts[1]})
    url, headers = signed[1]["url"], signed[1]["headers"]
    longer = httpx.put(
        url, content=parts[1] + b"x", headers={**headers, "Content-Length": str(len(parts[1]) + 1)}
    )
    assert longer.status_code == 403
    corrupted = bytearray(parts[1])
    corrupted[12345] ^= 0xFF
    refused = httpx.put(url, content=bytes(corrupted), headers=headers)
    assert refused.status_code == 400 and "BadDigest" in refused.text
    state = (await api.get(f"/v1/uploads/{created['upload_id']}", headers=auth(key_a))).json()
    assert state["parts"] == []
    # the last part is shorter, and its URL is signed for exactly that length
    last = created["part_count"]
    signed_last = await _sign(api, key_a, created["upload_id"], {last: parts[last]})
    assert signed_last[last]["headers"]["Content-Length"] == str(
        40 * MIB - (last - 1) * created["part_size"]
    )


async def test_complete_errors_name_the_parts(api: httpx.AsyncClient, key_a: str) -> None:
    content = os.urandom(33 * MIB)
    created = await _create(api, key_a, content)
    upload_id, count = created["upload_id"], created["part_count"]
    parts = parts_of(content, created["part_size"])
    etags = _put_parts(
        await _sign(api, key_a, upload_id, parts), {n: parts[n] for n in range(1, count)}
    )

    async def complete(body: dict[str, Any]) -> httpx.Response:
        return await api.post(f"/v1/uploads/{upload_id}/complete", json=body, headers=auth(key_a))

    every = [{"part_number": n, "etag": etags.get(n, "0" * 32)} for n in range(1, count + 1)]
    missing = await complete({"parts": every})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_parts"
    assert f"Part {count} is missing" in missing.json()["error"]["message"]

    etags |= _put_parts(
        await _sign(api, key_a, upload_id, {count: parts[count]}), {count: parts[count]}
    )
    wrong = [
        {"part_number": n, "etag": etags[n] if n != 2 else "f" * 32} for n in range(1, count + 1)
    ]
    mismatch = await complete({"parts": wrong})
    assert mismatch.status_code == 400 and mismatch.json()["error"]["code"] == "etag_mismatch"
    assert "part 2 " in mismatch.json()["error"]["message"]

    twice = await complete({"parts": [{"part_number": 1, "etag": etags[1]}] * 2})
    assert twice.status_code == 400 and twice.json()["error"]["code"] == "invalid_parts"
    beyond = await api.post(
        f"/v1/uploads/{upload_id}/parts", json={"part_numbers": [count + 1]}, headers=auth(key_a)
    )
    assert beyond.status_code == 400 and beyond.json()["error"]["code"] == "invalid_parts"
    both = await api.post(
        f"/v1/uploads/{upload_id}/parts",
        json={"part_numbers": [1], "parts": [{"part_number": 1, "sha256": b64_sha256(b"")}]},
        headers=auth(key_a),
    )
    assert both.status_code == 422
    too_many = await api.post(
        f"/v1/uploads/{upload_id}/parts",
        json={"part_numbers": list(range(1, 102))},
        headers=auth(key_a),
    )
    assert too_many.status_code == 422
    # A whole-file CRC64NVME means nothing to an upload whose parts were not declared so.
    crc = await complete(
        {
            "parts": [{"part_number": n, "etag": etags[n]} for n in range(1, count + 1)],
            "crc64nvme": b64_crc64(content),
        }
    )
    assert crc.status_code == 400 and crc.json()["error"]["code"] == "invalid_parts"

    done = await complete(
        {"parts": [{"part_number": n, "etag": etags[n]} for n in range(1, count + 1)]}
    )
    assert done.status_code == 200
    file = await wait_until_terminal(api, key_a, created["file_id"], timeout=120)
    assert file["status"] == "ready" and file["sha256"] == hashlib.sha256(content).hexdigest()
    # Repeated (its answer lost on the way, say), it answers how the file stands.
    again = await complete(
        {"parts": [{"part_number": n, "etag": etags[n]} for n in range(1, count + 1)]}
    )
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "ready" and again.json()["file"]["sha256"] == file["sha256"]


async def test_abort_drops_the_parts_and_cancels(
    api: httpx.AsyncClient, key_a: str, stack: Settings, s3: Any, sessions: Any
) -> None:
    content = os.urandom(32 * MIB)
    created = await _create(api, key_a, content)
    parts = parts_of(content, created["part_size"])
    _put_parts(await _sign(api, key_a, created["upload_id"], {1: parts[1]}), {1: parts[1]})
    cancelled = await api.delete(f"/v1/uploads/{created['upload_id']}", headers=auth(key_a))
    assert cancelled.status_code == 202, cancelled.text
    file = await wait_until_terminal(api, key_a, created["file_id"])
    assert file["status"] == "cancelled" and file["status_detail"] == "the upload was cancelled"
    with sessions() as session:
        row = session.get(Upload, uuid.UUID(created["upload_id"]))
    with pytest.raises(s3.exceptions.NoSuchUpload):
        s3.list_parts(Bucket=stack.bucket, Key=row.object_key, UploadId=row.multipart_upload_id)
    again = await api.delete(f"/v1/uploads/{created['upload_id']}", headers=auth(key_a))
    assert again.status_code == 409
    late = await api.post(
        f"/v1/uploads/{created['upload_id']}/complete",
        json={"parts": [{"part_number": 1, "etag": "0" * 32}]},
        headers=auth(key_a),
    )
    assert late.status_code == 409 and late.json()["error"]["code"] == "upload_not_active"


async def test_abandoned_upload_expires_and_its_parts_go(
    api: httpx.AsyncClient, key_a: str, stack: Settings, s3: Any, sessions: Any, temporal: Client
) -> None:
    content = os.urandom(32 * MIB)
    created = await _create(api, key_a, content)
    parts = parts_of(content, created["part_size"])
    _put_parts(await _sign(api, key_a, created["upload_id"], {1: parts[1]}), {1: parts[1]})
    # Replace the workflow with one whose upload expires in 2 s (the stack's expiry is an hour).
    handle = temporal.get_workflow_handle_for(IngestWorkflow.run, f"ingest-{created['file_id']}")
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    original = await temporal.data_converter.decode(started.input.payloads, [IngestInput])
    await handle.terminate("test: replaced by a short-lived upload")
    inp = replace(original[0], expire_after_seconds=2, reconcile_after_seconds=1)
    await temporal.start_workflow(
        IngestWorkflow.run,
        inp,
        id=f"ingest-{created['file_id']}",
        task_queue=stack.ingest_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )
    file = await wait_until_terminal(api, key_a, created["file_id"], timeout=30)
    assert file["status"] == "expired" and file["status_detail"] == "no object arrived within 2 s"
    with pytest.raises(s3.exceptions.NoSuchUpload):
        s3.list_parts(Bucket=stack.bucket, Key=inp.object_key, UploadId=inp.multipart_upload_id)


async def test_create_signs_the_parts_whose_checksums_it_is_given(
    api: httpx.AsyncClient, key_a: str
) -> None:
    content = os.urandom(36 * MIB)
    parts = parts_of(content, 6 * MIB)
    response = await api.post(
        "/v1/uploads",
        json={
            "filename": "chosen-parts.bin",
            "size": len(content),
            "content_type": "application/octet-stream",
            "sha256": hashlib.sha256(content).hexdigest(),
            "part_size": 6 * MIB,
            "parts": [{"part_number": n, "sha256": b64_sha256(d)} for n, d in parts.items()],
        },
        headers=auth(key_a),
    )
    assert response.status_code == 201, response.text
    created = response.json()
    # The client's part size is the upload's, and every part's URL is in the answer.
    assert (created["part_size"], created["part_count"]) == (6 * MIB, 6)
    assert created["parts_expire_at"] is not None
    signed = {p["part_number"]: p for p in created["parts"]}
    assert sorted(signed) == [1, 2, 3, 4, 5, 6]

    etags = _put_parts(signed, parts)
    completed = await api.post(
        f"/v1/uploads/{created['upload_id']}/complete",
        json={
            "parts": [
                {"part_number": n, "etag": e, "sha256": b64_sha256(parts[n])}
                for n, e in sorted(etags.items())
            ]
        },
        headers=auth(key_a),
    )
    assert completed.status_code == 200, completed.text
    answered = completed.json()["file"]
    assert answered["id"] == created["file_id"] and answered["status"] == "processing"
    file = await wait_until_terminal(api, key_a, created["file_id"], timeout=120)
    assert file["status"] == "ready", file
    assert file["sha256"] == hashlib.sha256(content).hexdigest()


async def test_crc64nvme_parts_and_the_whole_object_are_checked_by_the_store(
    api: httpx.AsyncClient, key_a: str
) -> None:
    """The SDK's default: each part signed with its CRC64NVME, the whole file's CRC64NVME
    checked when the store assembles it, and the SHA-256 found by the workflow."""
    content = os.urandom(36 * MIB)
    parts = parts_of(content, 6 * MIB)
    response = await api.post(
        "/v1/uploads",
        json={
            "filename": "crc.bin",
            "size": len(content),
            "content_type": "application/octet-stream",
            "part_size": 6 * MIB,
            "part_checksum": "crc64nvme",
            "parts": [{"part_number": n, "crc64nvme": b64_crc64(d)} for n, d in parts.items()],
        },
        headers=auth(key_a),
    )
    assert response.status_code == 201, response.text
    created = response.json()
    signed = {p["part_number"]: p for p in created["parts"]}
    assert signed[1]["headers"]["x-amz-checksum-crc64nvme"] == b64_crc64(parts[1])

    upload_path = f"/v1/uploads/{created['upload_id']}"
    state = (await api.get(upload_path, headers=auth(key_a))).json()
    assert state["part_checksum"] == "crc64nvme"
    for other in (
        {"parts": [{"part_number": 1, "sha256": b64_sha256(parts[1])}]},
        {"part_numbers": [1]},
    ):
        refused_sign = await api.post(f"{upload_path}/parts", json=other, headers=auth(key_a))
        assert refused_sign.status_code == 400, refused_sign.text
        assert refused_sign.json()["error"]["code"] == "invalid_parts"
        assert "crc64nvme" in refused_sign.json()["error"]["message"]

    corrupted = bytearray(parts[1])
    corrupted[4321] ^= 0x01
    refused = httpx.put(signed[1]["url"], content=bytes(corrupted), headers=signed[1]["headers"])
    assert refused.status_code == 400 and "BadDigest" in refused.text

    etags = _put_parts(signed, parts)
    completion = [
        {"part_number": n, "etag": e, "crc64nvme": b64_crc64(parts[n])}
        for n, e in sorted(etags.items())
    ]
    path = f"{upload_path}/complete"
    mixed = await api.post(
        path,
        json={
            "parts": [
                {"part_number": 1, "etag": etags[1], "sha256": b64_sha256(parts[1])},
                *completion[1:],
            ]
        },
        headers=auth(key_a),
    )
    assert mixed.status_code == 400 and mixed.json()["error"]["code"] == "invalid_parts"
    wrong = await api.post(
        path,
        json={"parts": completion, "crc64nvme": b64_crc64(content[:-1] + b"!")},
        headers=auth(key_a),
    )
    assert wrong.status_code == 400, wrong.text
    assert wrong.json()["error"]["code"] == "checksum_mismatch"

    completed = await api.post(
        path, json={"parts": completion, "crc64nvme": b64_crc64(content)}, headers=auth(key_a)
    )
    assert completed.status_code == 200, completed.text
    file = await wait_until_terminal(api, key_a, created["file_id"], timeout=120)
    assert file["status"] == "ready", file
    assert file["sha256"] == hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize(
    ("extra", "status", "code"),
    [
        (  # one algorithm per upload
            {
                "parts": [
                    {"part_number": 1, "sha256": b64_sha256(b"a")},
                    {"part_number": 2, "crc64nvme": b64_crc64(b"b")},
                ]
            },
            422,
            "invalid_request",
        ),
        (  # one checksum per part
            {
                "parts": [
                    {"part_number": 1, "sha256": b64_sha256(b"a"), "crc64nvme": b64_crc64(b"a")}
                ]
            },
            422,
            "invalid_request",
        ),
        (
            {"part_checksum": "sha256", "parts": [{"part_number": 1, "crc64nvme": b64_crc64(b"")}]},
            422,
            "invalid_request",
        ),
        ({"part_checksum": "md5"}, 422, "invalid_request"),
        ({"parts": [{"part_number": 1}]}, 422, "invalid_request"),
        ({"part_size": 4 * MIB}, 422, "invalid_request"),  # under S3's 5 MiB
        ({"part_size": 6 * 1024 * MIB}, 422, "invalid_request"),  # over S3's 5 GiB
        ({"parts": [{"part_number": 1, "sha256": "x"}]}, 422, "invalid_request"),
        (
            {
                "parts": [
                    {"part_number": 1, "sha256": b64_sha256(b"a")},
                    {"part_number": 1, "sha256": b64_sha256(b"b")},
                ]
            },
            422,
            "invalid_request",
        ),
        (  # 40 MiB in 8 MiB parts has no part 6
            {"part_size": 8 * MIB, "parts": [{"part_number": 6, "sha256": b64_sha256(b"a")}]},
            400,
            "invalid_parts",
        ),
    ],
)
async def test_create_refuses_parts_the_upload_cannot_have(
    api: httpx.AsyncClient, key_a: str, extra: dict[str, Any], status: int, code: str
) -> None:
    body = {
        "filename": "bad-parts.bin",
        "size": 40 * MIB,
        "content_type": "application/octet-stream",
        **extra,
    }
    response = await api.post("/v1/uploads", json=body, headers=auth(key_a))
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_a_part_size_needing_over_10000_parts_is_refused(
    api: httpx.AsyncClient, key_a: str
) -> None:
    body = {
        "filename": "huge.bin",
        "size": 10_001 * 5 * MIB,
        "content_type": "application/octet-stream",
        "part_size": 5 * MIB,
    }
    response = await api.post("/v1/uploads", json=body, headers=auth(key_a))
    assert response.status_code == 422, response.text
    assert "10000 parts" in response.json()["error"]["message"]

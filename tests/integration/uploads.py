"""What a client does: declare an upload, PUT the bytes to the store, follow the file."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import httpx
from awscrt import checksums

from tests.helpers import assert_eventually


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def b64_sha256(data: bytes) -> str:
    """A SHA-256 as S3 headers carry it."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def b64_crc64(data: bytes) -> str:
    """A CRC64NVME as S3 headers carry it (computed by awscrt, the SDK's own library)."""
    return base64.b64encode(checksums.crc64nvme(data).to_bytes(8, "big")).decode()


def sample_bytes(size: int = 1024) -> bytes:
    """Text with a random marker, so each test's bytes are its own."""
    marker = os.urandom(8).hex()
    line = f"conveyor test {marker}\n".encode()
    return (line * (size // len(line) + 1))[:size]


async def declare(
    api: httpx.AsyncClient,
    key: str,
    content: bytes,
    *,
    content_type: str = "text/plain",
    declare_sha256: bool = True,
    size: int | None = None,
    filename: str = "hello.txt",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "filename": filename,
        "size": len(content) if size is None else size,
        "content_type": content_type,
        "visibility": "private",
    }
    if declare_sha256:
        body["sha256"] = hashlib.sha256(content).hexdigest()
    response = await api.post("/v1/uploads", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def put(upload: dict[str, Any], content: bytes, **header_overrides: str) -> httpx.Response:
    headers = {**upload["headers"], **header_overrides}
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.put(upload["url"], content=content, headers=headers)


async def wait_for_status(
    api: httpx.AsyncClient, key: str, file_id: str, status: str, timeout: float = 60
) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        response = await api.get(f"/v1/files/{file_id}", headers=auth(key))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["status"] == status, body
        return body

    return await assert_eventually(check, timeout=timeout, interval=0.05)


TERMINAL = ("ready", "quarantined", "failed", "expired", "cancelled")


async def wait_until_terminal(
    api: httpx.AsyncClient, key: str, file_id: str, timeout: float = 90
) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        response = await api.get(f"/v1/files/{file_id}", headers=auth(key))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["status"] in TERMINAL, body
        return body

    return await assert_eventually(check, timeout=timeout, interval=0.1)


async def upload(
    api: httpx.AsyncClient,
    key: str,
    content: bytes,
    *,
    content_type: str = "application/octet-stream",
    filename: str = "file.bin",
    visibility: str = "private",
) -> dict[str, Any]:
    """Declares, PUTs and waits for a terminal status; returns the file as the API shows it."""
    response = await api.post(
        "/v1/uploads",
        json={
            "filename": filename,
            "size": len(content),
            "content_type": content_type,
            "sha256": hashlib.sha256(content).hexdigest(),
            "visibility": visibility,
        },
        headers=auth(key),
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    if created["method"] == "PUT":
        put_response = await put(created, content)
        assert put_response.status_code == 200, put_response.text
    elif created["method"] == "MULTIPART":
        await put_multipart(api, key, created, content)
    return await wait_until_terminal(api, key, created["file_id"], timeout=120)


async def put_multipart(
    api: httpx.AsyncClient, key: str, created: dict[str, Any], content: bytes
) -> None:
    """Sends every part in order, then completes: the plainest client there is."""
    size = created["part_size"]
    numbers = list(range(1, created["part_count"] + 1))
    completed = []
    async with httpx.AsyncClient(timeout=60) as store:
        for batch in (numbers[i : i + 100] for i in range(0, len(numbers), 100)):
            signed = await api.post(
                f"/v1/uploads/{created['upload_id']}/parts",
                json={"part_numbers": batch},
                headers=auth(key),
            )
            assert signed.status_code == 200, signed.text
            for part in signed.json()["parts"]:
                n = part["part_number"]
                body = content[(n - 1) * size : n * size]
                response = await store.put(part["url"], content=body, headers=part["headers"])
                assert response.status_code == 200, response.text
                completed.append({"part_number": n, "etag": response.headers["etag"]})
    done = await api.post(
        f"/v1/uploads/{created['upload_id']}/complete",
        json={"parts": completed},
        headers=auth(key),
    )
    assert done.status_code == 200, done.text


async def mint(api: httpx.AsyncClient, key: str, **limits: Any) -> dict[str, Any]:
    """An upload token of the tenant whose key this is, with these limits."""
    minted = await api.post("/v1/upload-tokens", json=limits, headers=auth(key))
    assert minted.status_code == 201, minted.text
    token: dict[str, Any] = minted.json()
    assert token["token"].startswith("cvu_")
    return token

"""Auth, tenant isolation, the error shape and health, against the real API process."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from conveyor_core.settings import Settings
from tests.integration.conftest import create_key
from tests.integration.uploads import auth, declare, sample_bytes
from workers.stack import manage


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["error"]["message"].endswith(".")


async def test_missing_or_wrong_key_is_401(api: httpx.AsyncClient, key_a: str) -> None:
    file_path = f"/v1/files/{uuid.uuid4()}"
    assert_error(await api.get(file_path), 401, "missing_api_key")
    assert_error(
        await api.get(file_path, headers={"Authorization": "Basic abc"}), 401, "missing_api_key"
    )
    assert_error(await api.get(file_path, headers=auth(key_a + "x")), 401, "invalid_api_key")
    body = {"filename": "a.txt", "size": 1, "content_type": "text/plain"}
    assert_error(await api.post("/v1/uploads", json=body), 401, "missing_api_key")


async def test_other_tenants_files_are_404(api: httpx.AsyncClient, key_a: str, key_b: str) -> None:
    upload = await declare(api, key_a, sample_bytes(16))
    assert (await api.get(f"/v1/files/{upload['file_id']}", headers=auth(key_a))).status_code == 200
    assert_error(
        await api.get(f"/v1/files/{upload['file_id']}", headers=auth(key_b)), 404, "file_not_found"
    )
    assert_error(
        await api.get(f"/v1/uploads/{upload['upload_id']}", headers=auth(key_b)),
        404,
        "upload_not_found",
    )
    assert_error(
        await api.get(f"/v1/files/{uuid.uuid4()}", headers=auth(key_a)), 404, "file_not_found"
    )


@pytest.mark.parametrize(
    "body",
    [
        {"filename": "../../etc/passwd", "size": 1, "content_type": "text/plain"},
        {"filename": "a.txt", "size": -5, "content_type": "text/plain"},
        {"filename": "a.txt", "size": 1, "content_type": "not a type"},
        {"filename": "a.txt", "size": 1, "content_type": "text/plain", "sha256": "xyz"},
        {"filename": "a\x00.txt", "size": 1, "content_type": "text/plain"},
        {"size": 1, "content_type": "text/plain"},
        [],
    ],
)
async def test_bad_upload_declarations_are_422(
    api: httpx.AsyncClient, key_a: str, body: object
) -> None:
    assert_error(
        await api.post("/v1/uploads", json=body, headers=auth(key_a)), 422, "invalid_request"
    )


async def test_malformed_json_and_unknown_routes(api: httpx.AsyncClient, key_a: str) -> None:
    response = await api.post(
        "/v1/uploads",
        content=b"{not json",
        headers={**auth(key_a), "Content-Type": "application/json"},
    )
    assert_error(response, 422, "invalid_request")
    assert_error(await api.get("/v1/files/not-a-uuid", headers=auth(key_a)), 422, "invalid_request")
    assert_error(await api.get("/v1/nothing-here"), 404, "not_found")
    assert_error(await api.put("/v1/uploads", headers=auth(key_a)), 405, "method_not_allowed")


async def test_absurd_sizes_are_413(api: httpx.AsyncClient, key_a: str) -> None:
    body = {"filename": "huge.bin", "size": 10**15, "content_type": "application/octet-stream"}
    assert_error(
        await api.post("/v1/uploads", json=body, headers=auth(key_a)), 413, "file_too_large"
    )


async def test_health_and_readiness(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == dict.fromkeys(
        ("postgres", "object_store", "temporal", "nats", "clamd", "edge"), "ok"
    )


def test_keys_create_prints_a_working_key_last(stack: Settings) -> None:
    key = create_key(stack, "tenant-cli")
    assert key.startswith("cvk_")
    response = httpx.get(f"{stack.api_url}/v1/files/{uuid.uuid4()}", headers=auth(key))
    assert response.status_code == 404  # authenticated; the file just does not exist


def test_stack_up_again_is_harmless_and_fast(stack: Settings) -> None:
    before = manage.status(stack)
    assert set(before.values()) == {"RUNNING"}, before
    started = time.monotonic()
    manage.up(stack)
    assert time.monotonic() - started < 15
    assert manage.status(stack) == before

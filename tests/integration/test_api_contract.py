"""Auth, tenant isolation, the error shape and health, against the real API process."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
import pytest

from api.app import create_app
from conveyor_core.settings import Settings
from tests.integration.conftest import create_key, delete_webhooks
from tests.integration.uploads import auth, declare, put, sample_bytes, wait_for_status
from workers.stack import manage

PUBLIC = {("GET", "/healthz"), ("GET", "/readyz")}
# Every route of the spec, as (METHOD, path template): new routes are tested as they come.
# Uppy's routes carry their credential, an upload token, in the path (the widget sends no
# headers): tests/integration/test_uppy.py checks their refusals and isolation.
ROUTES = sorted(
    (method.upper(), path)
    for path, operations in create_app(Settings(environment="test")).openapi()["paths"].items()
    for method in operations
    if not path.startswith("/v1/uppy/")
)
# What another tenant's id answers, by the path parameter that carries it.
NOT_YOURS = {
    "upload_id": "upload_not_found",
    "file_id": "file_not_found",
    "webhook_id": "webhook_not_found",
    "token_id": "upload_token_not_found",
}
# A valid body for the routes that need one, so the id (not the body) is what is refused.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/uploads"): {"filename": "a.txt", "size": 1, "content_type": "text/plain"},
    ("POST", "/v1/uploads/{upload_id}/parts"): {"part_numbers": [1]},
    ("POST", "/v1/uploads/{upload_id}/complete"): {"parts": [{"part_number": 1, "etag": "e"}]},
    ("POST", "/v1/webhooks"): {"url": "http://127.0.0.1:9/hook"},
}
ID_ROUTES = [r for r in ROUTES if re.search(r"\{\w+\}", r[1])]


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


def _fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)


@pytest.mark.parametrize("route", sorted(set(ROUTES) - PUBLIC), ids=" ".join)
async def test_every_route_refuses_a_missing_or_wrong_key(
    api: httpx.AsyncClient, key_a: str, route: tuple[str, str]
) -> None:
    method, path = route
    url = _fill(path, {name: str(uuid.uuid4()) for name in NOT_YOURS})
    body = BODIES.get(route)
    for headers, code in (
        ({}, "missing_api_key"),
        ({"Authorization": f"Basic {key_a}"}, "missing_api_key"),
        (auth(key_a + "x"), "invalid_api_key"),
    ):
        assert_error(await api.request(method, url, json=body, headers=headers), 401, code)


def test_every_id_route_is_in_the_isolation_test() -> None:
    """Each path parameter of the spec is an id whose owner is checked below."""
    params = {p for _, path in ID_ROUTES for p in re.findall(r"\{(\w+)\}", path)}
    assert params == set(NOT_YOURS)
    assert len(ID_ROUTES) >= 12, ID_ROUTES


async def test_every_route_with_an_id_hides_other_tenants_ids(
    api: httpx.AsyncClient, key_a: str, key_b: str
) -> None:
    """Tenant B names tenant A's real upload, file and webhook on every route that takes an
    id: each answers 404 as for an id that does not exist, and A's things are untouched."""
    content = sample_bytes(64)
    ready = await declare(api, key_a, content)
    assert (await put(ready, content)).status_code == 200
    await wait_for_status(api, key_a, ready["file_id"], "ready")
    multipart = await api.post(
        "/v1/uploads",
        json={"filename": "big.bin", "size": 64 * 1024 * 1024, "content_type": "text/plain"},
        headers=auth(key_a),
    )
    assert multipart.status_code == 201 and multipart.json()["method"] == "MULTIPART"
    hook = await api.post(
        "/v1/webhooks", json=BODIES[("POST", "/v1/webhooks")], headers=auth(key_a)
    )
    assert hook.status_code == 201, hook.text
    token = await api.post("/v1/upload-tokens", json={}, headers=auth(key_a))
    assert token.status_code == 201, token.text
    ids = {
        "upload_id": multipart.json()["upload_id"],
        "file_id": ready["file_id"],
        "webhook_id": hook.json()["id"],
        "token_id": token.json()["id"],
    }
    for route in ID_ROUTES:
        method, path = route
        param = re.findall(r"\{(\w+)\}", path)[0]
        response = await api.request(
            method, _fill(path, ids), json=BODIES.get(route), headers=auth(key_b)
        )
        assert_error(response, 404, NOT_YOURS[param])
        unknown = await api.request(
            method,
            _fill(path, {name: str(uuid.uuid4()) for name in NOT_YOURS}),
            json=BODIES.get(route),
            headers=auth(key_b),
        )
        assert unknown.json() == response.json(), route  # indistinguishable from no such id

    # Nothing B did reached A's upload, file or webhook.
    mine = await api.get(f"/v1/files/{ready['file_id']}", headers=auth(key_a))
    assert mine.status_code == 200 and mine.json()["status"] == "ready"
    waiting = await api.get(f"/v1/uploads/{ids['upload_id']}", headers=auth(key_a))
    assert waiting.status_code == 200 and waiting.json()["status"] == "awaiting_upload"
    hooks = (await api.get("/v1/webhooks", headers=auth(key_a))).json()["webhooks"]
    assert ids["webhook_id"] in [h["id"] for h in hooks]
    still = await api.get("/v1/files", headers=auth(token.json()["token"]))
    assert still.status_code == 200  # B's revoke of A's token did nothing
    assert (
        await api.delete(f"/v1/uploads/{ids['upload_id']}", headers=auth(key_a))
    ).status_code == 202
    await delete_webhooks(api, key_a)


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
    ("body", "code"),
    [
        (
            {"filename": "../../etc/passwd", "size": 1, "content_type": "text/plain"},
            "invalid_filename",
        ),
        ({"filename": "a.txt", "size": -5, "content_type": "text/plain"}, "invalid_request"),
        ({"filename": "a.txt", "size": 1, "content_type": "not a type"}, "invalid_content_type"),
        (
            {"filename": "a.txt", "size": 1, "content_type": "text/plain", "sha256": "xyz"},
            "invalid_request",
        ),
        ({"filename": "a\x00.txt", "size": 1, "content_type": "text/plain"}, "invalid_filename"),
        ({"size": 1, "content_type": "text/plain"}, "invalid_request"),
        ([], "invalid_request"),
    ],
)
async def test_bad_upload_declarations_are_422(
    api: httpx.AsyncClient, key_a: str, body: object, code: str
) -> None:
    assert_error(await api.post("/v1/uploads", json=body, headers=auth(key_a)), 422, code)


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

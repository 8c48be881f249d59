"""Every error code the API documents, produced by a real request against the test stack.

`SCENARIOS` holds one request per code; `UNREACHABLE` the codes no client request can
produce, with the reason. `test_every_documented_code_has_a_scenario` collects the codes the
API documents (the `ErrorCode` enum, the OpenAPI spec's response descriptions, every code
the `api/` package names, and the `<status> <code>` pairs of README.md) and fails when one
has neither a scenario nor a reason, so a new code cannot go untested.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.errors import STATUS, ErrorCode
from conveyor_core.db.models import Upload
from conveyor_core.settings import Settings
from tests.helpers import assert_eventually
from tests.integration.test_limits import limited_tenant
from tests.integration.uploads import (
    auth,
    b64_crc64,
    declare,
    mint,
    put,
    sample_bytes,
    upload,
    wait_for_status,
)
from workers.stack import manage
from workers.stack.signatures import eicar

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Ctx:
    api: httpx.AsyncClient
    stack: Settings
    key: str
    s3: Any
    sessions: sessionmaker[Session]


Scenario = Callable[[Ctx], Awaitable[httpx.Response]]


# --- small steps the scenarios share -----------------------------------------------------


async def _awaiting(c: Ctx) -> dict[str, Any]:
    """A declared PUT upload whose bytes never come."""
    return await declare(c.api, c.key, sample_bytes(64))


async def _ready(c: Ctx) -> dict[str, Any]:
    """A declared and uploaded file, once it is ready."""
    content = sample_bytes(256)
    created = await declare(c.api, c.key, content)
    assert (await put(created, content)).status_code == 200
    await wait_for_status(c.api, c.key, created["file_id"], "ready")
    return created


async def _multipart(c: Ctx) -> dict[str, Any]:
    body = {
        "filename": "big.bin",
        "size": c.stack.multipart_threshold,
        "content_type": "application/octet-stream",
    }
    response = await c.api.post("/v1/uploads", json=body, headers=auth(c.key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["method"] == "MULTIPART" and created["part_count"] >= 2, created
    return created


# --- one scenario per code ------------------------------------------------------------------


async def missing_api_key(c: Ctx) -> httpx.Response:
    return await c.api.get("/v1/files")


async def invalid_api_key(c: Ctx) -> httpx.Response:
    return await c.api.get("/v1/files", headers=auth(c.key + "x"))


async def upload_token_not_found(c: Ctx) -> httpx.Response:
    return await c.api.delete(f"/v1/upload-tokens/{uuid.uuid4()}", headers=auth(c.key))


async def upload_token_expired(c: Ctx) -> httpx.Response:
    token = await mint(c.api, c.key)
    revoked = await c.api.delete(f"/v1/upload-tokens/{token['id']}", headers=auth(c.key))
    assert revoked.status_code == 204, revoked.text
    return await c.api.get("/v1/files", headers=auth(token["token"]))


async def upload_token_not_allowed(c: Ctx) -> httpx.Response:
    token = await mint(c.api, c.key)
    return await c.api.post("/v1/upload-tokens", json={}, headers=auth(token["token"]))


async def origin_not_allowed(c: Ctx) -> httpx.Response:
    # What a page of another site sends: its origin, and a token it got hold of.
    token = await mint(c.api, c.key)
    headers = {**auth(token["token"]), "Origin": "https://elsewhere.example"}
    return await c.api.get("/v1/files", headers=headers)


async def upload_token_used_up(c: Ctx) -> httpx.Response:
    token = await mint(c.api, c.key, max_files=1)
    await declare(c.api, token["token"], sample_bytes(10))
    body = {"filename": "two.txt", "size": 10, "content_type": "application/octet-stream"}
    return await c.api.post("/v1/uploads", json=body, headers=auth(token["token"]))


async def content_type_not_allowed(c: Ctx) -> httpx.Response:
    token = await mint(c.api, c.key, content_types=["image/*"])
    body = {"filename": "page.html", "size": 10, "content_type": "text/html"}
    return await c.api.post("/v1/uploads", json=body, headers=auth(token["token"]))


async def visibility_not_allowed(c: Ctx) -> httpx.Response:
    token = await mint(c.api, c.key)
    body = {"filename": "a.txt", "size": 10, "content_type": "text/plain", "visibility": "public"}
    return await c.api.post("/v1/uploads", json=body, headers=auth(token["token"]))


async def file_quarantined(c: Ctx) -> httpx.Response:
    file = await upload(c.api, c.key, eicar() + sample_bytes(16), filename="eicar.com")
    assert file["status"] == "quarantined", file
    return await c.api.get(f"/v1/files/{file['id']}/content", headers=auth(c.key))


async def not_found(c: Ctx) -> httpx.Response:
    return await c.api.get("/v1/nothing-here", headers=auth(c.key))


async def upload_not_found(c: Ctx) -> httpx.Response:
    return await c.api.get(f"/v1/uploads/{uuid.uuid4()}", headers=auth(c.key))


async def file_not_found(c: Ctx) -> httpx.Response:
    return await c.api.get(f"/v1/files/{uuid.uuid4()}", headers=auth(c.key))


async def text_not_available(c: Ctx) -> httpx.Response:
    created = await _awaiting(c)
    return await c.api.get(f"/v1/files/{created['file_id']}/text", headers=auth(c.key))


async def webhook_not_found(c: Ctx) -> httpx.Response:
    return await c.api.get(f"/v1/webhooks/{uuid.uuid4()}/deliveries", headers=auth(c.key))


async def method_not_allowed(c: Ctx) -> httpx.Response:
    return await c.api.put("/v1/uploads", headers=auth(c.key))


async def invalid_parts(c: Ctx) -> httpx.Response:
    created = await _multipart(c)
    return await c.api.post(
        f"/v1/uploads/{created['upload_id']}/parts",
        json={"part_numbers": [created["part_count"] + 1]},
        headers=auth(c.key),
    )


async def missing_parts(c: Ctx) -> httpx.Response:
    created = await _multipart(c)
    return await c.api.post(
        f"/v1/uploads/{created['upload_id']}/complete",
        json={"parts": [{"part_number": 1, "etag": "0" * 32}]},
        headers=auth(c.key),
    )


async def etag_mismatch(c: Ctx) -> httpx.Response:
    """Every part is in the store, but the client names another etag for the last one."""
    created = await _multipart(c)
    content = sample_bytes(c.stack.multipart_threshold)
    numbers = list(range(1, created["part_count"] + 1))
    signed = await c.api.post(
        f"/v1/uploads/{created['upload_id']}/parts",
        json={"part_numbers": numbers},
        headers=auth(c.key),
    )
    assert signed.status_code == 200, signed.text
    size = created["part_size"]
    parts = []
    async with httpx.AsyncClient(timeout=60) as store:
        for part in signed.json()["parts"]:
            n = part["part_number"]
            body = content[(n - 1) * size : n * size]
            sent = await store.put(part["url"], content=body, headers=part["headers"])
            assert sent.status_code == 200, sent.text
            parts.append({"part_number": n, "etag": sent.headers["etag"]})
    parts[-1]["etag"] = hashlib.md5(b"other bytes").hexdigest()
    return await c.api.post(
        f"/v1/uploads/{created['upload_id']}/complete", json={"parts": parts}, headers=auth(c.key)
    )


async def checksum_mismatch(c: Ctx) -> httpx.Response:
    """Every part is in the store, but the whole-file CRC64NVME sent is another file's."""
    content = sample_bytes(c.stack.multipart_threshold)
    created = (
        await c.api.post(
            "/v1/uploads",
            json={
                "filename": "big.bin",
                "size": len(content),
                "content_type": "application/octet-stream",
                "part_checksum": "crc64nvme",
            },
            headers=auth(c.key),
        )
    ).json()
    size = created["part_size"]
    bodies = {n: content[(n - 1) * size : n * size] for n in range(1, created["part_count"] + 1)}
    signed = await c.api.post(
        f"/v1/uploads/{created['upload_id']}/parts",
        json={"parts": [{"part_number": n, "crc64nvme": b64_crc64(b)} for n, b in bodies.items()]},
        headers=auth(c.key),
    )
    assert signed.status_code == 200, signed.text
    parts = []
    async with httpx.AsyncClient(timeout=60) as store:
        for part in signed.json()["parts"]:
            n = part["part_number"]
            sent = await store.put(part["url"], content=bodies[n], headers=part["headers"])
            assert sent.status_code == 200, sent.text
            parts.append(
                {"part_number": n, "etag": sent.headers["etag"], "crc64nvme": b64_crc64(bodies[n])}
            )
    return await c.api.post(
        f"/v1/uploads/{created['upload_id']}/complete",
        json={"parts": parts, "crc64nvme": b64_crc64(b"other bytes")},
        headers=auth(c.key),
    )


async def invalid_cursor(c: Ctx) -> httpx.Response:
    return await c.api.get("/v1/files", params={"cursor": "bm90IGEgY3Vyc29y"}, headers=auth(c.key))


async def invalid_url(c: Ctx) -> httpx.Response:
    return await c.api.post(
        "/v1/webhooks", json={"url": "ftp://example.com/hook"}, headers=auth(c.key)
    )


async def invalid_events(c: Ctx) -> httpx.Response:
    return await c.api.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["file.exploded"]},
        headers=auth(c.key),
    )


async def invalid_last_event_id(c: Ctx) -> httpx.Response:
    created = await _awaiting(c)
    return await c.api.get(
        f"/v1/files/{created['file_id']}/events",
        headers={**auth(c.key), "Last-Event-ID": "the first one"},
    )


async def file_not_ready(c: Ctx) -> httpx.Response:
    created = await _awaiting(c)
    return await c.api.get(f"/v1/files/{created['file_id']}/content", headers=auth(c.key))


async def file_not_finished(c: Ctx) -> httpx.Response:
    created = await _awaiting(c)
    return await c.api.delete(f"/v1/files/{created['file_id']}", headers=auth(c.key))


async def upload_not_active(c: Ctx) -> httpx.Response:
    created = await _ready(c)
    return await c.api.delete(f"/v1/uploads/{created['upload_id']}", headers=auth(c.key))


async def not_multipart(c: Ctx) -> httpx.Response:
    created = await _awaiting(c)
    return await c.api.post(
        f"/v1/uploads/{created['upload_id']}/parts",
        json={"part_numbers": [1]},
        headers=auth(c.key),
    )


async def not_retryable(c: Ctx) -> httpx.Response:
    created = await _ready(c)
    return await c.api.post(f"/v1/files/{created['file_id']}/retry", headers=auth(c.key))


async def bytes_gone(c: Ctx) -> httpx.Response:
    """Verify failed (a store that ignores the signed length took fewer bytes): nothing kept."""
    content = sample_bytes(300)
    created = await declare(c.api, c.key, content, declare_sha256=False, size=400)
    with c.sessions() as session:
        row = session.get(Upload, uuid.UUID(created["upload_id"]))
        assert row is not None
        key = row.object_key
    c.s3.put_object(Bucket=c.stack.bucket, Key=key, Body=content, ContentType="text/plain")
    await wait_for_status(c.api, c.key, created["file_id"], "failed")
    return await c.api.post(f"/v1/files/{created['file_id']}/retry", headers=auth(c.key))


async def file_deleted(c: Ctx) -> httpx.Response:
    created = await _ready(c)
    deleted = await c.api.delete(f"/v1/files/{created['file_id']}", headers=auth(c.key))
    assert deleted.status_code == 204, deleted.text
    return await c.api.get(f"/v1/files/{created['file_id']}", headers=auth(c.key))


async def file_too_large(c: Ctx) -> httpx.Response:
    body = {"filename": "huge.bin", "size": 10**15, "content_type": "application/octet-stream"}
    return await c.api.post("/v1/uploads", json=body, headers=auth(c.key))


async def file_quota_exceeded(c: Ctx) -> httpx.Response:
    _, key = limited_tenant(c.stack, "--max-files", "1")
    await declare(c.api, key, sample_bytes(10))
    body = {"filename": "two.txt", "size": 10, "content_type": "text/plain"}
    return await c.api.post("/v1/uploads", json=body, headers=auth(key))


async def storage_quota_exceeded(c: Ctx) -> httpx.Response:
    _, key = limited_tenant(c.stack, "--max-bytes", "100")
    body = {"filename": "big.txt", "size": 101, "content_type": "text/plain"}
    return await c.api.post("/v1/uploads", json=body, headers=auth(key))


async def invalid_request(c: Ctx) -> httpx.Response:
    """A JSON body that is not UTF-8 is as unreadable as malformed JSON (it once was a 400
    `http_400`, a code documented nowhere)."""
    return await c.api.post(
        "/v1/uploads",
        content=b'{"filename": "\xff\xfe.txt", "size": 1, "content_type": "text/plain"}',
        headers={**auth(c.key), "Content-Type": "application/json"},
    )


async def idempotency_key_reused(c: Ctx) -> httpx.Response:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"filename": "a.txt", "size": 10, "content_type": "text/plain"}
    first = await c.api.post("/v1/uploads", json=body, headers={**auth(c.key), **key})
    assert first.status_code == 201, first.text
    other = {**body, "filename": "b.txt"}
    return await c.api.post("/v1/uploads", json=other, headers={**auth(c.key), **key})


async def rate_limited(c: Ctx) -> httpx.Response:
    _, key = limited_tenant(c.stack, "--rate-limit", "1/minute")
    assert (await c.api.get("/v1/files", headers=auth(key))).status_code == 200
    refused = await c.api.get("/v1/files", headers=auth(key))
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    return refused


async def request_too_large(c: Ctx) -> httpx.Response:
    body = {"filename": "a.txt", "size": 1, "content_type": "text/plain", "pad": "x" * 70_000}
    return await c.api.post("/v1/uploads", json=body, headers=auth(c.key))


async def invalid_filename(c: Ctx) -> httpx.Response:
    body = {"filename": "invoice\u202efdp.exe", "size": 1, "content_type": "text/plain"}
    return await c.api.post("/v1/uploads", json=body, headers=auth(c.key))


async def invalid_content_type(c: Ctx) -> httpx.Response:
    body = {"filename": "a.txt", "size": 1, "content_type": "text/plain\r\nX-Injected: 1"}
    return await c.api.post("/v1/uploads", json=body, headers=auth(c.key))


async def too_many_streams(c: Ctx) -> httpx.Response:
    """Every stream slot of a fresh tenant held by a stream on a file that never finishes."""
    _, key = limited_tenant(c.stack, "--rate-limit", "1000/second")
    created = await declare(c.api, key, sample_bytes(64))
    path = f"/v1/files/{created['file_id']}/events"
    async with contextlib.AsyncExitStack() as streams:
        for _ in range(c.stack.api_max_streams_per_tenant):
            held = await streams.enter_async_context(c.api.stream("GET", path, headers=auth(key)))
            assert held.status_code == 200
        refused = await c.api.get(path, headers=auth(key))
        await refused.aread()
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    return refused


async def dependency_unavailable(c: Ctx) -> httpx.Response:
    """Postgres stopped through the stack's supervisor, and started again."""
    manage.supervisorctl(c.stack, "stop", "postgres")
    try:
        refused = await c.api.get(f"/v1/files/{uuid.uuid4()}", headers=auth(c.key))
        assert refused.headers["retry-after"] == "5"
    finally:
        manage.supervisorctl(c.stack, "start", "postgres")

    async def recovered() -> None:
        assert (await c.api.get("/readyz")).status_code == 200

    await assert_eventually(recovered, timeout=30)
    return refused


SCENARIOS: dict[ErrorCode, Scenario] = {
    ErrorCode.MISSING_API_KEY: missing_api_key,
    ErrorCode.INVALID_API_KEY: invalid_api_key,
    ErrorCode.UPLOAD_TOKEN_EXPIRED: upload_token_expired,
    ErrorCode.UPLOAD_TOKEN_NOT_FOUND: upload_token_not_found,
    ErrorCode.UPLOAD_TOKEN_NOT_ALLOWED: upload_token_not_allowed,
    ErrorCode.UPLOAD_TOKEN_USED_UP: upload_token_used_up,
    ErrorCode.ORIGIN_NOT_ALLOWED: origin_not_allowed,
    ErrorCode.CONTENT_TYPE_NOT_ALLOWED: content_type_not_allowed,
    ErrorCode.VISIBILITY_NOT_ALLOWED: visibility_not_allowed,
    ErrorCode.FILE_QUARANTINED: file_quarantined,
    ErrorCode.NOT_FOUND: not_found,
    ErrorCode.UPLOAD_NOT_FOUND: upload_not_found,
    ErrorCode.FILE_NOT_FOUND: file_not_found,
    ErrorCode.TEXT_NOT_AVAILABLE: text_not_available,
    ErrorCode.WEBHOOK_NOT_FOUND: webhook_not_found,
    ErrorCode.METHOD_NOT_ALLOWED: method_not_allowed,
    ErrorCode.INVALID_PARTS: invalid_parts,
    ErrorCode.MISSING_PARTS: missing_parts,
    ErrorCode.ETAG_MISMATCH: etag_mismatch,
    ErrorCode.CHECKSUM_MISMATCH: checksum_mismatch,
    ErrorCode.INVALID_CURSOR: invalid_cursor,
    ErrorCode.INVALID_URL: invalid_url,
    ErrorCode.INVALID_EVENTS: invalid_events,
    ErrorCode.INVALID_LAST_EVENT_ID: invalid_last_event_id,
    ErrorCode.FILE_NOT_READY: file_not_ready,
    ErrorCode.FILE_NOT_FINISHED: file_not_finished,
    ErrorCode.UPLOAD_NOT_ACTIVE: upload_not_active,
    ErrorCode.NOT_MULTIPART: not_multipart,
    ErrorCode.NOT_RETRYABLE: not_retryable,
    ErrorCode.BYTES_GONE: bytes_gone,
    ErrorCode.FILE_DELETED: file_deleted,
    ErrorCode.FILE_TOO_LARGE: file_too_large,
    ErrorCode.FILE_QUOTA_EXCEEDED: file_quota_exceeded,
    ErrorCode.STORAGE_QUOTA_EXCEEDED: storage_quota_exceeded,
    ErrorCode.INVALID_REQUEST: invalid_request,
    ErrorCode.IDEMPOTENCY_KEY_REUSED: idempotency_key_reused,
    ErrorCode.RATE_LIMITED: rate_limited,
    ErrorCode.REQUEST_TOO_LARGE: request_too_large,
    ErrorCode.INVALID_FILENAME: invalid_filename,
    ErrorCode.INVALID_CONTENT_TYPE: invalid_content_type,
    ErrorCode.TOO_MANY_STREAMS: too_many_streams,
    # Last: it stops Postgres for a moment.
    ErrorCode.DEPENDENCY_UNAVAILABLE: dependency_unavailable,
}

UNREACHABLE: dict[ErrorCode, str] = {
    ErrorCode.INTERNAL_ERROR: (
        "a 500 is always a bug (DESIGN.md §4): no request is meant to produce it, so a "
        "scenario that did would be a bug to fix, not a test"
    ),
}


# --- what the API documents ----------------------------------------------------------------


def _spec() -> dict[str, Any]:
    return create_app(Settings(environment="test")).openapi()


def _spec_codes(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, int]]:
    """(METHOD, path template) -> the codes its error responses name, with their status."""
    found: dict[tuple[str, str], dict[str, int]] = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            codes = found.setdefault((method.upper(), path), {})
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                if status[0] in "45" and schema.get("$ref", "").endswith("/ErrorBody"):
                    for code in response["description"].split("|"):
                        codes[code.strip()] = int(status)
    return found


def _source_codes() -> set[str]:
    """Every code the api package names: `ErrorCode.X`, and any `code=`/`code =` string."""
    found: set[str] = set()
    for path in (REPO / "api").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "ErrorCode"
            ):
                found.add(ErrorCode[node.attr].value)
            pairs: list[tuple[str, ast.expr]] = []
            if isinstance(node, ast.keyword) and node.arg is not None:
                pairs.append((node.arg, node.value))
            if isinstance(node, ast.Assign):
                pairs += [(t.id, node.value) for t in node.targets if isinstance(t, ast.Name)]
            for name, value in pairs:
                if name == "code" and isinstance(value, ast.Constant):
                    found.add(str(value.value))
    return found


def _readme_codes() -> set[str]:
    """`<status> <code>` as README.md writes them (`409 not_retryable`)."""
    text = (REPO / "README.md").read_text()
    return set(re.findall(r"`[45]\d\d ([a-z]+(?:_[a-z]+)+)`", text))


SPEC = _spec_codes(_spec())


def documented_codes() -> set[str]:
    spec_codes = {code for codes in SPEC.values() for code in codes}
    return {c.value for c in ErrorCode} | spec_codes | _source_codes() | _readme_codes()


def test_every_documented_code_has_a_scenario() -> None:
    assert not set(SCENARIOS) & set(UNREACHABLE)
    covered = {c.value for c in SCENARIOS} | {c.value for c in UNREACHABLE}
    assert documented_codes() == covered
    # Each code has one status, and the spec files it under that status.
    assert set(STATUS) == set(ErrorCode)
    for route, codes in SPEC.items():
        for code, status in codes.items():
            assert STATUS[ErrorCode(code)] == status, (route, code, status)


def _route_of(request: httpx.Request) -> tuple[str, str] | None:
    for method, path in SPEC:
        pattern = re.sub(r"\{[^}]+\}", "[^/]+", path)
        if method == request.method and re.fullmatch(pattern, request.url.path):
            return method, path
    return None


@pytest.mark.parametrize("code", list(SCENARIOS), ids=[c.value for c in SCENARIOS])
async def test_error_code_is_reachable(
    code: ErrorCode,
    api: httpx.AsyncClient,
    stack: Settings,
    key_a: str,
    s3: Any,
    sessions: sessionmaker[Session],
) -> None:
    response = await SCENARIOS[code](Ctx(api=api, stack=stack, key=key_a, s3=s3, sessions=sessions))
    assert response.status_code == STATUS[code], response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code.value, body
    message = body["error"]["message"]
    # One sentence: one line, ending with its full stop, and no second sentence after it.
    assert re.fullmatch(r"\S[^\n]*\.", message), message
    assert not re.search(r"[.!?] [A-Z]", message), message
    # The route's spec names the code it answered (unknown addresses have no route).
    route = _route_of(response.request)
    if code not in (ErrorCode.NOT_FOUND, ErrorCode.METHOD_NOT_ALLOWED):
        assert route is not None, response.request.url
        assert code.value in SPEC[route], (route, SPEC[route])

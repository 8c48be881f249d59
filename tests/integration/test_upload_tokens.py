"""Upload tokens: what a browser holds instead of the tenant's API key. It uploads within its
limits and reads back what it uploaded; everything else is refused, and a revoked or expired
token stops at once."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from conveyor_core.db.models import UploadToken
from tests.integration import samples
from tests.integration.test_file_events import read_events
from tests.integration.uploads import auth, declare, mint, put, sample_bytes, upload


def _code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


async def test_a_token_uploads_and_reads_back_only_what_it_uploaded(
    api: httpx.AsyncClient, key_a: str, key_b: str
) -> None:
    token = (await mint(api, key_a, max_files=5, content_types=["text/*"]))["token"]
    content = sample_bytes(300)
    mine = await upload(api, token, content, content_type="text/plain", filename="mine.txt")
    assert mine["status"] == "ready"
    # What it made: the file, its bytes, its events, and in its list.
    assert (await api.get(f"/v1/files/{mine['id']}", headers=auth(token))).status_code == 200
    redirect = await api.get(f"/v1/files/{mine['id']}/content", headers=auth(token))
    assert redirect.status_code == 307
    async with httpx.AsyncClient() as client:
        assert (await client.get(redirect.headers["location"])).content == content
    events = await read_events(api, token, mine["id"])
    assert events[-1].data["status"] == "ready"
    listed = (await api.get("/v1/files", headers=auth(token))).json()["files"]
    assert [f["id"] for f in listed] == [mine["id"]]

    # What the tenant's key made, and what another tenant holds: not there for the token.
    theirs = await upload(api, key_a, sample_bytes(200), content_type="text/plain")
    other_tenant = await upload(api, key_b, sample_bytes(200), content_type="text/plain")
    for file_id in (theirs["id"], other_tenant["id"]):
        for path in ("", "/content", "/events"):
            got = await api.get(f"/v1/files/{file_id}{path}", headers=auth(token))
            assert _code(got) == (404, "file_not_found"), (path, got.text)
    listed = (await api.get("/v1/files", headers=auth(token))).json()["files"]
    assert [f["id"] for f in listed] == [mine["id"]]
    # The key still sees everything of its tenant, the token's file included.
    all_files = (await api.get("/v1/files?limit=100", headers=auth(key_a))).json()["files"]
    assert {mine["id"], theirs["id"]} <= {f["id"] for f in all_files}


async def test_a_token_is_refused_wherever_a_key_is_needed(
    api: httpx.AsyncClient, key_a: str
) -> None:
    token = (await mint(api, key_a))["token"]
    mine = await declare(api, token, sample_bytes(32))
    refused = [
        await api.post("/v1/upload-tokens", json={}, headers=auth(token)),
        await api.delete(f"/v1/files/{mine['file_id']}", headers=auth(token)),
        await api.post(f"/v1/files/{mine['file_id']}/retry", headers=auth(token)),
        await api.get("/v1/webhooks", headers=auth(token)),
        await api.post("/v1/webhooks", json={"url": "https://example.com/h"}, headers=auth(token)),
    ]
    for response in refused:
        assert _code(response) == (403, "upload_token_not_allowed"), response.request.url
    # Its own upload it may cancel, as the page's cancel button does.
    cancelled = await api.delete(f"/v1/uploads/{mine['upload_id']}", headers=auth(token))
    assert cancelled.status_code == 202, cancelled.text


async def test_a_tokens_limits_hold(api: httpx.AsyncClient, key_a: str) -> None:
    token = (await mint(api, key_a, max_files=1, max_file_size=100, content_types=["image/*"]))[
        "token"
    ]

    def body(size: int, content_type: str) -> dict[str, Any]:
        return {"filename": "a.png", "size": size, "content_type": content_type}

    too_big = await api.post("/v1/uploads", json=body(101, "image/png"), headers=auth(token))
    assert _code(too_big) == (413, "file_too_large")
    wrong_type = await api.post("/v1/uploads", json=body(10, "text/html"), headers=auth(token))
    assert _code(wrong_type) == (403, "content_type_not_allowed")
    # Refusals count nothing: its one file is still to make, and a replay is not a second.
    once = {"Idempotency-Key": str(uuid.uuid4())}
    first = await api.post("/v1/uploads", json=body(10, "image/png"), headers=auth(token) | once)
    assert first.status_code == 201, first.text
    replay = await api.post("/v1/uploads", json=body(10, "image/png"), headers=auth(token) | once)
    assert replay.status_code == 201 and replay.json()["file_id"] == first.json()["file_id"]
    second = await api.post("/v1/uploads", json=body(10, "image/png"), headers=auth(token))
    assert _code(second) == (403, "upload_token_used_up")


async def test_a_token_cannot_replay_the_keys_idempotency_keys(
    api: httpx.AsyncClient, key_a: str
) -> None:
    """A guessable Idempotency-Key the backend used must not hand its upload to a token."""
    once = {"Idempotency-Key": f"invoice-{uuid.uuid4().hex[:8]}"}
    body = {"filename": "invoice.pdf", "size": 10, "content_type": "application/pdf"}
    made = await api.post("/v1/uploads", json=body, headers=auth(key_a) | once)
    assert made.status_code == 201
    token = (await mint(api, key_a))["token"]
    replay = await api.post("/v1/uploads", json=body, headers=auth(token) | once)
    assert _code(replay) == (422, "idempotency_key_reused")
    assert made.json()["upload_id"] not in replay.text


async def test_a_revoked_or_expired_token_stops_at_once(
    api: httpx.AsyncClient, key_a: str, sessions: sessionmaker[Session]
) -> None:
    revoked, expired = await mint(api, key_a), await mint(api, key_a)
    assert (await api.get("/v1/files", headers=auth(revoked["token"]))).status_code == 200
    gone = await api.delete(f"/v1/upload-tokens/{revoked['id']}", headers=auth(key_a))
    assert gone.status_code == 204
    with sessions.begin() as session:
        session.execute(
            update(UploadToken)
            .where(UploadToken.id == uuid.UUID(expired["id"]))
            .values(expires_at=UploadToken.created_at)
        )
    for token in (revoked, expired):
        for response in (
            await api.get("/v1/files", headers=auth(token["token"])),
            await api.post(
                "/v1/uploads",
                json={"filename": "a.txt", "size": 1, "content_type": "text/plain"},
                headers=auth(token["token"]),
            ),
        ):
            assert _code(response) == (401, "upload_token_expired"), response.text


async def test_a_token_lives_no_longer_than_the_deployment_allows(
    api: httpx.AsyncClient, key_a: str
) -> None:
    too_long = await api.post(
        "/v1/upload-tokens", json={"expires_in": 10 * 24 * 3600}, headers=auth(key_a)
    )
    assert _code(too_long) == (422, "invalid_request")
    bad_type = await api.post(
        "/v1/upload-tokens", json={"content_types": ["image"]}, headers=auth(key_a)
    )
    assert _code(bad_type) == (422, "invalid_request")
    unauthenticated = await api.post("/v1/upload-tokens", json={})
    assert unauthenticated.status_code == 401


async def test_a_token_must_send_the_bytes_it_names(api: httpx.AsyncClient, key_a: str) -> None:
    """Naming the SHA-256 of bytes another of the app's users uploaded gets a token nothing:
    no instant dedup, and its own upload of them looks like a first upload."""
    content = samples.text_image("SOMEONE ELSE'S SCAN")
    theirs = await upload(api, key_a, content, content_type="image/png")
    assert theirs["status"] == "ready"
    token = (await mint(api, key_a))["token"]
    body = {
        "filename": "guess.png",
        "size": len(content),
        "content_type": "image/png",
        "sha256": theirs["sha256"],
    }
    created = await api.post("/v1/uploads", json=body, headers=auth(token))
    assert created.status_code == 201 and created.json()["method"] == "PUT", created.text
    # Sent, its bytes are its own file, run at the pace of a first upload.
    assert (await put(created.json(), content)).status_code == 200
    events = await read_events(api, token, created.json()["file_id"])
    seen = [(e.data.get("stage"), e.data["status"]) for e in events if e.name == "stage"]
    assert ("scan", "running") in seen and ("thumbnails", "running") in seen, seen


async def test_a_token_makes_public_files_only_if_allowed(
    api: httpx.AsyncClient, key_a: str
) -> None:
    body = {"filename": "a.txt", "size": 10, "content_type": "text/plain", "visibility": "public"}
    private_only = (await mint(api, key_a))["token"]
    refused = await api.post("/v1/uploads", json=body, headers=auth(private_only))
    assert _code(refused) == (403, "visibility_not_allowed")
    public = await mint(api, key_a, allow_public=True)
    assert public["allow_public"] is True
    allowed = await api.post("/v1/uploads", json=body, headers=auth(public["token"]))
    assert allowed.status_code == 201, allowed.text

"""The processing stages end to end through the API: dedup, scan, thumbnails, OCR,
publication, downloads, search and delete, on the real stack."""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from conveyor_core.db.models import Blob, Upload
from conveyor_core.settings import Settings
from tests.helpers import assert_eventually
from tests.integration import samples
from tests.integration.inspection import head_status, scheduled_activities
from tests.integration.uploads import auth, sample_bytes, upload, wait_until_terminal
from workers.stack import manage
from workers.stack.signatures import eicar


async def test_image_gets_every_stage_and_is_found_by_its_text(
    api: httpx.AsyncClient, key_a: str
) -> None:
    content = samples.text_image("INVOICE 4711")
    file = await upload(api, key_a, content, content_type="image/png", filename="scan-0001.png")
    assert file["status"] == "ready", file
    assert file["content_type"] == "image/png"
    stages = file["stages"]
    assert stages["scan"]["status"] == "succeeded" and stages["scan"]["detail"] == "clean"
    assert stages["thumbnails"]["status"] == "succeeded"
    assert stages["ocr"]["status"] == "succeeded" and "eng" in stages["ocr"]["detail"]
    assert all(isinstance(stages[s]["duration_ms"], int) for s in ("scan", "thumbnails", "ocr"))
    sizes = {t["size"]: t for t in file["thumbnails"]}
    assert set(sizes) == {256, 1024}
    assert (sizes[256]["width"], sizes[256]["height"]) == (256, 85)
    thumb = httpx.get(sizes[256]["url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"

    text = await api.get(f"/v1/files/{file['id']}/text", headers=auth(key_a))
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert "INVOICE 4711" in text.text

    by_text = await api.get("/v1/files", params={"q": "invoice"}, headers=auth(key_a))
    assert file["id"] in [f["id"] for f in by_text.json()["files"]]
    by_name = await api.get("/v1/files", params={"q": "scan 0001"}, headers=auth(key_a))
    assert file["id"] in [f["id"] for f in by_name.json()["files"]]


async def test_pdf_text_on_page_two_is_searchable(api: httpx.AsyncClient, key_a: str) -> None:
    # A plain word: OCR may misread random characters, and the search is per tenant anyway.
    content = samples.pdf_with_text_on_page_two("Quarterly zebra report")
    file = await upload(api, key_a, content, content_type="application/pdf", filename="q.pdf")
    assert file["status"] == "ready"
    assert file["stages"]["ocr"]["detail"].startswith("eng, 2 page")
    assert file["stages"]["thumbnails"]["status"] == "succeeded"
    found = await api.get("/v1/files", params={"q": "zebra"}, headers=auth(key_a))
    assert file["id"] in [f["id"] for f in found.json()["files"]]
    not_on_page_one = await api.get("/v1/files", params={"q": "giraffe"}, headers=auth(key_a))
    assert file["id"] not in [f["id"] for f in not_on_page_one.json()["files"]]


async def test_eicar_bare_and_zipped_are_quarantined(
    api: httpx.AsyncClient, key_a: str, stack: Settings, s3: Any
) -> None:
    for content, name in (
        (eicar() + sample_bytes(16), "eicar.com"),
        (samples.zipped("inner/eicar.com", eicar()), "archive.zip"),
    ):
        file = await upload(api, key_a, content, filename=name)
        assert file["status"] == "quarantined", file
        assert file["status_detail"] == "infected: Conveyor.Test.EICAR.UNOFFICIAL"
        assert file["stages"]["scan"]["detail"] == "infected: Conveyor.Test.EICAR.UNOFFICIAL"
        assert file["thumbnails"] == [] and file["cdn_url"] is None
        content_response = await api.get(f"/v1/files/{file['id']}/content", headers=auth(key_a))
        assert content_response.status_code == 403
        assert content_response.json()["error"]["code"] == "file_quarantined"
        sha = hashlib.sha256(content).hexdigest()
        assert head_status(s3, stack.quarantine_bucket, sha) == 200
        for prefix in ("incoming/", "sealed/"):
            listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=prefix)
            assert all(
                o.get("ETag", "").strip('"') != hashlib.md5(content).hexdigest()
                for o in listed.get("Contents", [])
            )


async def test_bad_images_fail_their_stage_and_the_next_file_goes_through(
    api: httpx.AsyncClient, key_a: str
) -> None:
    truncated = await upload(api, key_a, samples.truncated_jpeg(), content_type="image/jpeg")
    assert truncated["status"] == "ready"
    assert truncated["stages"]["thumbnails"]["status"] == "failed"
    assert truncated["stages"]["thumbnails"]["detail"]

    bomb = await upload(api, key_a, samples.pixel_bomb(), content_type="image/png")
    assert bomb["status"] == "ready"
    assert bomb["stages"]["thumbnails"]["status"] == "failed"
    assert "pixel" in bomb["stages"]["thumbnails"]["detail"]
    assert bomb["stages"]["ocr"]["status"] == "failed"

    pdf_as_png = samples.pdf_with_text_on_page_two("not an image")
    lying = await upload(api, key_a, pdf_as_png, content_type="image/png", filename="photo.png")
    assert lying["status"] == "ready" and lying["content_type"] == "application/pdf"

    after = await upload(api, key_a, samples.text_image("STILL WORKING"), content_type="image/png")
    assert after["status"] == "ready" and after["stages"]["thumbnails"]["status"] == "succeeded"


async def test_text_skips_image_stages_and_empty_file_ends(
    api: httpx.AsyncClient, key_a: str
) -> None:
    content = sample_bytes(500)
    text = await upload(api, key_a, content, content_type="text/plain", filename="a.txt")
    assert text["status"] == "ready"
    assert text["stages"]["ocr"] == {
        "status": "skipped",
        "detail": "no OCR for text/plain",
        "duration_ms": text["stages"]["ocr"]["duration_ms"],
    }
    assert text["stages"]["thumbnails"]["status"] == "skipped"
    assert text["stages"]["text"]["detail"] == "plain text (utf-8), 500 characters"
    own = await api.get(f"/v1/files/{text['id']}/text", headers=auth(key_a))
    assert own.status_code == 200 and own.text == content.decode().strip()

    binary = await upload(api, key_a, os.urandom(300), filename="noise.bin")
    missing = await api.get(f"/v1/files/{binary['id']}/text", headers=auth(key_a))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "text_not_available"
    sniffed = binary["content_type"]  # random bytes: libmagic's guess varies
    assert missing.json()["error"]["message"] == (
        f"This file has no text (no text for {sniffed}; no OCR for {sniffed})."
    )

    empty = await upload(api, key_a, b"", content_type="text/plain", filename="empty.txt")
    assert empty["status"] in ("ready", "failed"), empty
    assert empty["size"] == 0


async def test_dedup_within_and_across_tenants(
    api: httpx.AsyncClient,
    key_a: str,
    key_b: str,
    temporal: Client,
    sessions: sessionmaker[Session],
    s3: Any,
    stack: Settings,
) -> None:
    content = samples.text_image("DEDUP ME")
    sha = hashlib.sha256(content).hexdigest()
    first = await upload(api, key_a, content, content_type="image/png")
    with sessions() as session:
        blob = session.get(Blob, sha)
        assert blob is not None
        canonical_key = blob.object_key

    # Same tenant, same bytes: nothing to send, ready at once, same derivatives.
    created = await api.post(
        "/v1/uploads",
        json={
            "filename": "again.png",
            "size": len(content),
            "content_type": "image/png",
            "sha256": sha,
        },
        headers=auth(key_a),
    )
    assert created.status_code == 201 and created.json()["method"] == "DEDUPLICATED"
    again = await wait_until_terminal(api, key_a, created.json()["file_id"], timeout=5)
    assert again["status"] == "ready" and again["sha256"] == sha
    assert [t["size"] for t in again["thumbnails"]] == [t["size"] for t in first["thumbnails"]]

    # Another tenant uploads the same bytes: never told, but storage is shared.
    created_b = await api.post(
        "/v1/uploads",
        json={
            "filename": "b.png",
            "size": len(content),
            "content_type": "image/png",
            "sha256": sha,
        },
        headers=auth(key_b),
    )
    assert created_b.json()["method"] == "PUT"
    async with httpx.AsyncClient() as client:
        put = await client.put(
            created_b.json()["url"], content=content, headers=created_b.json()["headers"]
        )
    assert put.status_code == 200
    other = await wait_until_terminal(api, key_b, created_b.json()["file_id"])
    assert other["status"] == "ready"
    for name in ("scan", "thumbnails", "ocr"):  # the outcome; the timing is its own
        assert {k: other["stages"][name][k] for k in ("status", "detail")} == {
            k: first["stages"][name][k] for k in ("status", "detail")
        }
    activities = await scheduled_activities(temporal, other["workflow_id"])
    assert not {"stage_scan", "stage_ocr", "scan_blob", "ocr_blob"} & set(activities)
    with sessions() as session:
        blob = session.get(Blob, sha)
        assert blob is not None and blob.object_key == canonical_key
    own_key = f"incoming/{created_b.json()['url'].split('/incoming/')[1].split('?')[0]}"
    assert head_status(s3, stack.bucket, own_key) == 404  # sealed away, then deleted
    with sessions() as session:
        own_upload = session.get(Upload, uuid.UUID(created_b.json()["upload_id"]))
        assert own_upload is not None and own_upload.sealed_key is not None
        own_sealed = own_upload.sealed_key
    assert head_status(s3, stack.bucket, own_sealed) == 404  # never copied, deleted


async def test_private_download_and_public_edge(
    api: httpx.AsyncClient, key_a: str, stack: Settings
) -> None:
    content = sample_bytes(4096)
    private = await upload(
        api, key_a, content, content_type="text/plain", filename='Résumé "final".txt'
    )
    redirect = await api.get(f"/v1/files/{private['id']}/content", headers=auth(key_a))
    assert redirect.status_code == 307
    downloaded = httpx.get(redirect.headers["location"])
    assert downloaded.status_code == 200 and downloaded.content == content
    disposition = downloaded.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="R_sum_ _final_.txt"')
    assert "filename*=UTF-8''R%C3%A9sum%C3%A9%20%22final%22.txt" in disposition
    assert private["cdn_url"] is None
    sha = private["sha256"]
    assert httpx.get(f"{stack.edge}/{sha}").status_code in (403, 404)

    public_bytes = samples.text_image("PUBLIC")
    public = await upload(api, key_a, public_bytes, content_type="image/png", visibility="public")
    assert public["cdn_url"] == f"{stack.edge_public}/{public['sha256']}"
    first = httpx.get(public["cdn_url"])
    second = httpx.get(public["cdn_url"])
    assert first.content == second.content == public_bytes
    assert first.headers["x-cache-status"] == "MISS" and second.headers["x-cache-status"] == "HIT"
    assert "immutable" in second.headers["cache-control"]
    redirect = await api.get(f"/v1/files/{public['id']}/content", headers=auth(key_a))
    assert redirect.status_code == 307 and redirect.headers["location"] == public["cdn_url"]


async def test_delete_releases_the_blob_with_its_last_reference(
    api: httpx.AsyncClient, key_a: str, stack: Settings, s3: Any, sessions: sessionmaker[Session]
) -> None:
    content = samples.text_image("DELETE ME")
    sha = hashlib.sha256(content).hexdigest()
    first = await upload(api, key_a, content, content_type="image/png", visibility="public")
    second = await upload(api, key_a, content, content_type="image/png", filename="copy.png")
    assert first["cdn_url"] and httpx.get(first["cdn_url"]).status_code == 200
    with sessions() as session:
        blob = session.get(Blob, sha)
        assert blob is not None
        object_key, thumbs = blob.object_key, [t["key"] for t in blob.thumbnails]

    assert (await api.delete(f"/v1/files/{first['id']}", headers=auth(key_a))).status_code == 204
    gone = await api.get(f"/v1/files/{first['id']}", headers=auth(key_a))
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "file_deleted"
    again = await api.delete(f"/v1/files/{first['id']}", headers=auth(key_a))
    assert again.status_code == 410
    # The second file still holds the bytes.
    redirect = await api.get(f"/v1/files/{second['id']}/content", headers=auth(key_a))
    assert httpx.get(redirect.headers["location"]).content == content

    assert (await api.delete(f"/v1/files/{second['id']}", headers=auth(key_a))).status_code == 204

    async def released() -> None:
        assert head_status(s3, stack.bucket, object_key) == 404
        assert all(head_status(s3, stack.bucket, k) == 404 for k in thumbs)
        assert head_status(s3, stack.public_bucket, sha) == 404
        assert httpx.get(first["cdn_url"]).status_code == 404  # purged from the edge cache

    await assert_eventually(released, timeout=30)
    listed = await api.get("/v1/files", headers=auth(key_a))
    assert first["id"] not in [f["id"] for f in listed.json()["files"]]


async def test_list_paginates_and_filters(api: httpx.AsyncClient, key_b: str) -> None:
    ids = [
        (
            await upload(
                api, key_b, sample_bytes(64), content_type="text/plain", filename=f"page{i}.txt"
            )
        )["id"]
        for i in range(3)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "content_type": "text/plain"}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/v1/files", params=params, headers=auth(key_b))).json()
        seen += [f["id"] for f in page["files"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen[:3] == ids[::-1]
    assert len(seen) == len(set(seen))
    ready = await api.get("/v1/files", params={"status": "quarantined"}, headers=auth(key_b))
    assert ready.json()["files"] == []
    bad = await api.get("/v1/files", params={"cursor": "nonsense"}, headers=auth(key_b))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"


async def test_over_the_scan_limit_fails_with_reason(
    api: httpx.AsyncClient, key_a: str, stack: Settings
) -> None:
    content = os.urandom(stack.scan_max_bytes + 1)
    file = await upload(api, key_a, content, filename="big.bin")
    assert file["status"] == "failed"
    limit = stack.scan_max_bytes
    reason = f"too large to scan ({limit + 1} bytes, limit {limit})"
    assert file["stages"]["scan"] == {
        "status": "failed",
        "detail": reason,
        "duration_ms": file["stages"]["scan"]["duration_ms"],
    }
    assert file["status_detail"] == f"scan: {reason}"
    assert file["stages"]["thumbnails"]["status"] == "skipped"
    content_response = await api.get(f"/v1/files/{file['id']}/content", headers=auth(key_a))
    assert content_response.status_code == 409


async def test_scanner_down_fails_the_file_never_ready_unscanned(
    api: httpx.AsyncClient, key_a: str, stack: Settings
) -> None:
    manage.supervisorctl(stack, "stop", "clamd")
    try:
        file = await upload(api, key_a, sample_bytes(300), content_type="text/plain")
    finally:
        manage.supervisorctl(stack, "start", "clamd")
    assert file["status"] == "failed"
    assert file["stages"]["scan"]["status"] == "failed"
    assert file["status_detail"].startswith("scan: scanner error")
    # With the scanner back, the same bytes go through (the failed blob is taken over).
    again = await upload(api, key_a, sample_bytes(300), content_type="text/plain")
    assert again["status"] == "ready"

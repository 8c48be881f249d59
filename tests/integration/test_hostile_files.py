"""Hostile files through the whole chain: each ends in a terminal state with a reason, the
workers stay up (the stack fixture fails the run on any crash) and the next file goes
through."""

from __future__ import annotations

import io
import os
import zipfile
from typing import Any

import httpx
from PIL import Image

from conveyor_core.settings import Settings
from tests.integration import samples
from tests.integration.uploads import (
    auth,
    declare,
    put,
    sample_bytes,
    wait_for_status,
    wait_until_terminal,
)

MIB = 1024 * 1024


def nested_zip_bomb(inner_zips: int = 4, files_each: int = 5, file_mib: int = 16) -> bytes:
    """Zips of highly compressed files inside a zip: 320 MiB inside a file of well under
    1 MiB. Each file differs (a random head), so the scanner's cache of files it has seen
    does not shortcut the expansion."""
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_STORED) as top:
        for i in range(inner_zips):
            inner = io.BytesIO()
            with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
                for j in range(files_each):
                    z.writestr(f"part{j}.bin", os.urandom(64) + bytes(file_mib * MIB))
            top.writestr(f"inner{i}.zip", inner.getvalue())
    return outer.getvalue()


def pdf_of_pages(pages: int) -> bytes:
    blank = Image.new("L", (60, 80), 255)
    out = io.BytesIO()
    blank.save(out, "PDF", save_all=True, append_images=[blank] * (pages - 1))
    return out.getvalue()


def polyglot_pdf_zip() -> bytes:
    """A valid PDF with a valid zip appended (zip readers look from the end)."""
    return samples.pdf_with_text_on_page_two("POLYGLOT") + samples.zipped(
        "inner.txt", sample_bytes(200)
    )


async def _through(
    api: httpx.AsyncClient, key: str, content: bytes, content_type: str, filename: str
) -> dict[str, Any]:
    created = await declare(api, key, content, content_type=content_type, filename=filename)
    assert (await put(created, content)).status_code == 200
    return await wait_until_terminal(api, key, created["file_id"], timeout=180)


async def test_a_zip_bomb_fails_its_scan_with_the_reason(
    api: httpx.AsyncClient, key_a: str
) -> None:
    bomb = nested_zip_bomb()
    assert len(bomb) < MIB
    file = await _through(api, key_a, bomb, "application/zip", "bomb.zip")
    assert file["status"] == "failed", file
    assert "cannot be scanned whole" in file["status_detail"], file
    assert file["stages"]["scan"]["status"] == "failed"
    content = await api.get(f"/v1/files/{file['id']}/content", headers=auth(key_a))
    assert content.status_code == 409  # never served


async def test_hostile_images_and_documents_end_with_reasons(
    api: httpx.AsyncClient, key_a: str
) -> None:
    cases = {
        "pixel bomb": (samples.pixel_bomb(), "image/png", "bomb.png"),
        "truncated jpeg": (samples.truncated_jpeg(), "image/jpeg", "cut.jpg"),
        "3000-page pdf": (pdf_of_pages(3000), "application/pdf", "long.pdf"),
        "pdf+zip polyglot": (polyglot_pdf_zip(), "application/pdf", "poly.pdf"),
        "pdf declared as png": (pdf_of_pages(2), "image/png", "liar.png"),
        "encrypted pdf": (samples.encrypted_pdf("STATEMENT"), "application/pdf", "locked.pdf"),
        "empty file": (b"", "text/plain", "empty.txt"),
    }
    outcomes = {}
    for name, (content, content_type, filename) in cases.items():
        outcomes[name] = await _through(api, key_a, content, content_type, filename)

    for name, file in outcomes.items():
        assert file["status"] == "ready", (name, file)  # clean bytes stay available
        assert file["stages"]["scan"]["detail"].startswith("clean"), (name, file)
        for stage in ("thumbnails", "ocr"):
            state = file["stages"][stage]
            assert state["status"] in ("succeeded", "failed", "skipped"), (name, stage, state)
            if state["status"] != "succeeded":
                assert state["detail"], (name, stage, state)  # every refusal says why

    assert outcomes["pixel bomb"]["stages"]["thumbnails"]["status"] == "failed"
    assert outcomes["truncated jpeg"]["stages"]["thumbnails"]["status"] == "failed"
    long = outcomes["3000-page pdf"]["stages"]["ocr"]
    assert long["status"] == "succeeded" and "of 3000 pages" in long["detail"], long
    # The bytes decide the type, not the declaration.
    assert outcomes["pdf declared as png"]["content_type"] == "application/pdf"
    assert outcomes["pdf+zip polyglot"]["content_type"] == "application/pdf"
    assert outcomes["empty file"]["size"] == 0
    # A reason a person understands, not the tool's "Command Line Error: Incorrect password".
    locked = outcomes["encrypted pdf"]["stages"]
    assert locked["ocr"] == {
        "status": "failed",
        "detail": "Encrypted PDF: its text needs the password.",
        "duration_ms": locked["ocr"]["duration_ms"],
    }, locked
    assert locked["thumbnails"]["status"] == "failed", locked
    assert locked["thumbnails"]["detail"] == "encrypted PDF: its pages need the password", locked


async def test_a_huge_declaration_with_one_byte_sent_ends_cancelled_and_nothing_lands(
    stack: Settings, api: httpx.AsyncClient, key_a: str
) -> None:
    created = (
        await api.post(
            "/v1/uploads",
            json={"filename": "huge.bin", "size": 5 * 1024**3, "content_type": "application/zip"},
            headers=auth(key_a),
        )
    ).json()
    assert created["method"] == "MULTIPART"
    signed = (
        await api.post(
            f"/v1/uploads/{created['upload_id']}/parts",
            json={"part_numbers": [1]},
            headers=auth(key_a),
        )
    ).json()["parts"][0]
    async with httpx.AsyncClient(timeout=30) as store:
        sent = await store.put(
            signed["url"], content=b"x", headers={**signed["headers"], "Content-Length": "1"}
        )
    assert sent.status_code in (400, 403), sent.text  # the signed length is the part's
    refused = await api.post(
        f"/v1/uploads/{created['upload_id']}/complete",
        json={"parts": [{"part_number": 1, "etag": "0" * 32}]},
        headers=auth(key_a),
    )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "missing_parts"
    cancelled = await api.delete(f"/v1/uploads/{created['upload_id']}", headers=auth(key_a))
    assert cancelled.status_code == 202
    file = await wait_for_status(api, key_a, created["file_id"], "cancelled")
    assert file["status_detail"]

    # And the next ordinary file goes through.
    after = os.urandom(4096)
    created = await declare(api, key_a, after, content_type="application/octet-stream")
    assert (await put(created, after)).status_code == 200
    await wait_for_status(api, key_a, created["file_id"], "ready")

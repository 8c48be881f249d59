"""The text stage on the real stack: a document's own text (a digital PDF's text layer,
plain text in any encoding, HTML, e-mail, Word and OpenDocument files through LibreOffice,
archive listings) is kept and searched, with the language it is in; OCR reads only a PDF's
pages that have no text layer; a document that cannot be read fails the stage with a reason
and the file stays ready."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from conveyor_core.settings import Settings
from tests import extract_samples
from tests.integration.conftest import create_key
from tests.integration.uploads import auth, upload

pytestmark = pytest.mark.integration

ENGLISH = "the quarterly figures show that our warehouse shipped more parcels than last year"


async def _search(api: httpx.AsyncClient, key: str, q: str) -> set[str]:
    found = await api.get("/v1/files", params={"q": q}, headers=auth(key))
    assert found.status_code == 200, found.text
    return {f["id"] for f in found.json()["files"]}


async def _text(api: httpx.AsyncClient, key: str, file: dict[str, Any]) -> str:
    got = await api.get(f"/v1/files/{file['id']}/text", headers=auth(key))
    assert got.status_code == 200, got.text
    return got.text


async def test_every_common_document_is_searchable_by_its_words(
    api: httpx.AsyncClient, stack: Settings
) -> None:
    key = create_key(stack, f"text-{uuid.uuid4().hex[:8]}")
    documents = {
        "latin1.txt": (
            f"Crème brûlée recipe: {ENGLISH} zephyrtxt".encode("latin-1"),
            "text/plain",
        ),
        "mail.eml": (extract_samples.make_eml(), "message/rfc822"),
        "letter.docx": (
            extract_samples.make_docx([f"Dear team, {ENGLISH}.", "Signed: quokkadocx"]),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        "notes.odt": (
            extract_samples.make_odt([f"Minutes: {ENGLISH} wombatodt"]),
            "application/vnd.oasis.opendocument.text",
        ),
        "report.pdf": (
            extract_samples.make_text_pdf(
                [f"First page {ENGLISH}", "Second page narwhalpdf"],
                title="Annual report",
                author="Jane Roe",
            ),
            "application/pdf",
        ),
        "page.html": (extract_samples.make_html(f"{ENGLISH} axolotlhtml"), "text/html"),
        "bundle.zip": (
            extract_samples.make_zip({"contracts/pangolinzip.pdf": b"%PDF-1.4", "a.txt": b"x"}),
            "application/zip",
        ),
    }
    files = dict(
        zip(
            documents,
            await asyncio.gather(
                *(
                    upload(api, key, data, content_type=declared, filename=name)
                    for name, (data, declared) in documents.items()
                )
            ),
            strict=True,
        )
    )
    for name, file in files.items():
        assert file["status"] == "ready", (name, file)
        assert file["stages"]["text"]["status"] == "succeeded", (name, file["stages"])

    for word, name in (
        ("zephyrtxt", "latin1.txt"),
        ("Bob", "mail.eml"),
        ("quokkadocx", "letter.docx"),
        ("wombatodt", "notes.odt"),
        ("narwhalpdf", "report.pdf"),
        ("axolotlhtml", "page.html"),
        ("pangolinzip", "bundle.zip"),
    ):
        assert files[name]["id"] in await _search(api, key, word), (word, name)

    assert "Crème brûlée" in await _text(api, key, files["latin1.txt"])
    mail = await _text(api, key, files["mail.eml"])
    assert "Quarterly report" in mail and "report.pdf" in mail and "evil()" not in mail
    html = await _text(api, key, files["page.html"])
    assert "axolotlhtml" in html and "secretScript" not in html

    pdf = files["report.pdf"]
    assert pdf["metadata"]["pages"] == 2
    assert pdf["metadata"]["title"] == "Annual report" and pdf["metadata"]["author"] == "Jane Roe"
    assert pdf["metadata"]["language"] == "en"
    assert pdf["stages"]["text"]["detail"].startswith("pdf text layer, ")
    # Every page has a text layer: OCR has nothing to read.
    assert pdf["stages"]["ocr"] == {
        "status": "skipped",
        "detail": "every page has a text layer (read by the text stage)",
        "duration_ms": pdf["stages"]["ocr"]["duration_ms"],
    }
    assert files["letter.docx"]["metadata"]["language"] == "en"


async def test_ocr_reads_only_the_scanned_pages_of_a_mixed_pdf(
    api: httpx.AsyncClient, key_a: str
) -> None:
    # Page one has no text layer (as a scanned page), page two has one.
    content = extract_samples.make_text_pdf(["", f"typed page {uuid.uuid4().hex}"])
    file = await upload(api, key_a, content, content_type="application/pdf", filename="mix.pdf")
    assert file["status"] == "ready", file
    assert file["stages"]["text"]["status"] == "succeeded"
    assert file["stages"]["ocr"]["status"] == "succeeded"
    assert file["stages"]["ocr"]["detail"] == "eng, 1 of 2 pages (1 with a text layer)"


async def test_unreadable_documents_fail_the_stage_with_a_reason(
    api: httpx.AsyncClient, key_a: str
) -> None:
    broken_docx = extract_samples.make_docx(["fine"])[:400]  # a cut zip: no central directory
    encrypted = extract_samples.make_encrypted_pdf("locked words")
    docx, pdf = await asyncio.gather(
        upload(api, key_a, broken_docx, filename=f"broken-{uuid.uuid4().hex}.docx"),
        upload(api, key_a, encrypted, filename=f"locked-{uuid.uuid4().hex}.pdf"),
    )
    assert pdf["status"] == "ready", pdf
    assert pdf["stages"]["text"]["status"] == "failed"
    assert pdf["stages"]["text"]["detail"] == "Encrypted PDF: its text needs the password."
    assert docx["status"] == "ready", docx
    assert docx["stages"]["text"]["status"] in ("failed", "skipped"), docx["stages"]
    assert docx["stages"]["text"]["detail"], docx["stages"]

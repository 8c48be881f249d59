"""The OCR stage against the real store, Postgres, poppler and Tesseract."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import uuid
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import heartbeat
from activities.ocr import OcrActivities
from conveyor_core.db.models import Blob, BlobText
from conveyor_core.settings import Settings
from conveyor_core.types import INVALID_DOCUMENT_ERROR, BlobRef, OcrInput, OcrResult

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
A4_150DPI = (1240, 1754)


def text_page(
    lines: list[str], size: tuple[int, int] = A4_150DPI, font_size: int = 48
) -> Image.Image:
    page = Image.new("L", size, 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(FONT, font_size)
    for n, line in enumerate(lines):
        draw.text((80, 100 + n * int(font_size * 1.6)), line, fill=0, font=font)
    return page


def png_bytes(image: Image.Image) -> bytes:
    meta = PngInfo()
    meta.add_text("nonce", os.urandom(16).hex())  # a sha256 of this test's own
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=meta)
    return out.getvalue()


def pdf_bytes(pages: list[Image.Image]) -> bytes:
    out = io.BytesIO()
    pages[0].save(
        out,
        format="PDF",
        save_all=True,
        append_images=pages[1:],
        resolution=150,
        title=os.urandom(16).hex(),
    )
    return out.getvalue()


def stored_blob(
    content: bytes, content_type: str, s3: Any, sessions: sessionmaker[Session], stack: Settings
) -> BlobRef:
    """The object in the store and its `blob` row, as the dedup stage leaves them."""
    sha256 = hashlib.sha256(content).hexdigest()
    key = f"incoming/test-ocr/{uuid.uuid4()}"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=content)
    with sessions.begin() as session:
        session.execute(
            insert(Blob)
            .values(
                sha256=sha256,
                bucket=stack.bucket,
                object_key=key,
                size=len(content),
                content_type=content_type,
            )
            .on_conflict_do_nothing()
        )
    return BlobRef(stack.bucket, key, sha256, len(content), content_type)


def run_ocr(
    blob: BlobRef,
    s3: Any,
    sessions: sessionmaker[Session],
    settings: Settings,
    env: ActivityEnvironment | None = None,
) -> OcrResult:
    activities = OcrActivities(s3, sessions, settings)
    result: OcrResult = (env or ActivityEnvironment()).run(activities.ocr_blob, OcrInput(blob))
    return result


def blob_text(sessions: sessionmaker[Session], sha256: str) -> BlobText | None:
    with sessions() as session:
        return session.get(BlobText, (sha256, "ocr"))


def test_ocr_image_reads_text_and_stores_it(
    stack: Settings, s3: Any, sessions: sessionmaker[Session]
) -> None:
    image = text_page(["INVOICE 4711"], size=(1800, 1200), font_size=120)
    blob = stored_blob(png_bytes(image), "image/png", s3, sessions, stack)

    result = run_ocr(blob, s3, sessions, stack)

    assert result.skipped_reason is None
    assert result.pages == 1 and result.detail == "eng, 1 page"
    row = blob_text(sessions, blob.sha256)
    assert row is not None and "INVOICE 4711" in row.text
    assert row.pages == 1 and row.languages == "eng"
    assert result.characters == len(row.text)


def test_ocr_image_upright_from_exif(
    stack: Settings, s3: Any, sessions: sessionmaker[Session]
) -> None:
    # Stored sideways with an EXIF orientation tag, as phone cameras do.
    sideways = text_page(["RECEIPT 0815"], size=(1800, 1200), font_size=120).rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": undoes the CCW rotate above
    out = io.BytesIO()
    sideways.convert("RGB").save(out, format="JPEG", exif=exif, quality=95, comment=os.urandom(8))
    blob = stored_blob(out.getvalue(), "image/jpeg", s3, sessions, stack)

    run_ocr(blob, s3, sessions, stack)

    row = blob_text(sessions, blob.sha256)
    assert row is not None and "RECEIPT 0815" in row.text


def test_ocr_pdf_reads_second_page_and_heartbeats_each_page(
    stack: Settings, s3: Any, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As past an activity's first seconds, which send no heartbeat (tests/unit/test_heartbeat)
    monkeypatch.setattr(heartbeat, "QUIET_SECONDS", 0)
    blank = text_page([])
    words = text_page(["QUARTERLY REPORT", "Total due 1234 EUR"])
    blob = stored_blob(pdf_bytes([blank, words]), "application/pdf", s3, sessions, stack)
    beats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)

    result = run_ocr(blob, s3, sessions, stack, env)

    assert result.pages == 2 and result.detail == "eng, 2 pages"
    row = blob_text(sessions, blob.sha256)
    assert row is not None and row.pages == 2
    assert "QUARTERLY REPORT" in row.text and "1234" in row.text
    pages_beaten = [d[0]["page"] for d in beats if d and isinstance(d[0], dict)]
    assert pages_beaten[-2:] == [1, 2]


def test_ocr_pdf_resumes_from_heartbeat(
    stack: Settings, s3: Any, sessions: sessionmaker[Session]
) -> None:
    pages = [text_page(["FIRST PAGE"]), text_page(["SECOND PAGE"])]
    blob = stored_blob(pdf_bytes(pages), "application/pdf", s3, sessions, stack)
    env = ActivityEnvironment()
    # An earlier attempt got through page 1 before its worker died.
    earlier = {"sha256": blob.sha256, "page": 1, "texts": ["FROM THE EARLIER ATTEMPT"]}
    env.info = dataclasses.replace(env.info, heartbeat_details=[earlier])

    result = run_ocr(blob, s3, sessions, stack, env)

    row = blob_text(sessions, blob.sha256)
    assert result.pages == 2 and row is not None
    assert "FROM THE EARLIER ATTEMPT" in row.text and "SECOND PAGE" in row.text
    assert "FIRST PAGE" not in row.text


def test_ocr_pdf_stops_at_page_limit(
    stack: Settings, s3: Any, sessions: sessionmaker[Session]
) -> None:
    pages = [text_page([f"SECTION {word}"]) for word in ("ALPHA", "BRAVO", "CHARLIE")]
    blob = stored_blob(pdf_bytes(pages), "application/pdf", s3, sessions, stack)
    limited = stack.model_copy(update={"ocr_max_pages": 2})

    result = run_ocr(blob, s3, sessions, limited)

    assert result.pages == 2 and result.detail == "eng, 2 of 3 pages"
    row = blob_text(sessions, blob.sha256)
    assert row is not None and row.pages == 2
    assert "ALPHA" in row.text and "BRAVO" in row.text and "CHARLIE" not in row.text


def test_ocr_skips_plain_text(stack: Settings, s3: Any, sessions: sessionmaker[Session]) -> None:
    blob = stored_blob(os.urandom(8).hex().encode(), "text/plain", s3, sessions, stack)

    result = run_ocr(blob, s3, sessions, stack)

    assert result == OcrResult(skipped_reason="no OCR for text/plain")
    assert blob_text(sessions, blob.sha256) is None


@pytest.mark.parametrize(
    ("content", "content_type", "reason"),
    [
        (b"%PDF-1.4\n" + os.urandom(4096), "application/pdf", "The PDF could not be read"),
        (b"\x89PNG\r\n\x1a\n" + os.urandom(4096), "image/png", "could not be decoded"),
    ],
    ids=["broken-pdf", "broken-png"],
)
def test_ocr_broken_input_fails_permanently(
    stack: Settings,
    s3: Any,
    sessions: sessionmaker[Session],
    content: bytes,
    content_type: str,
    reason: str,
) -> None:
    blob = stored_blob(content, content_type, s3, sessions, stack)

    with pytest.raises(ApplicationError) as failure:
        run_ocr(blob, s3, sessions, stack)

    assert failure.value.type == INVALID_DOCUMENT_ERROR and failure.value.non_retryable
    assert reason in failure.value.message
    assert blob_text(sessions, blob.sha256) is None


def test_ocr_pixel_bomb_fails_permanently(
    stack: Settings, s3: Any, sessions: sessionmaker[Session]
) -> None:
    blob = stored_blob(png_bytes(text_page(["BOOM"])), "image/png", s3, sessions, stack)
    tiny_limit = stack.model_copy(update={"max_image_pixels": 100_000})

    try:
        with pytest.raises(ApplicationError) as failure:
            run_ocr(blob, s3, sessions, tiny_limit)
    finally:
        Image.MAX_IMAGE_PIXELS = stack.max_image_pixels  # the limit is process-wide

    assert failure.value.type == INVALID_DOCUMENT_ERROR and failure.value.non_retryable
    assert "pixels" in failure.value.message


def test_ocr_page_timeout_names_the_page(
    stack: Settings, s3: Any, sessions: sessionmaker[Session]
) -> None:
    # A dense 300 dpi A4 page takes Tesseract several seconds here.
    lines = [f"Line {n} of a long dense page with many words to read" for n in range(70)]
    dense = text_page(lines, size=(2480, 3508), font_size=40)
    blob = stored_blob(png_bytes(dense), "image/png", s3, sessions, stack)
    hurried = stack.model_copy(update={"ocr_page_timeout_seconds": 1})

    with pytest.raises(ApplicationError) as failure:
        run_ocr(blob, s3, sessions, hurried)

    assert failure.value.type == INVALID_DOCUMENT_ERROR and failure.value.non_retryable
    assert failure.value.message == "OCR of page 1 timed out after 1 s."
    assert blob_text(sessions, blob.sha256) is None


def test_ocr_twice_upserts_one_row(
    stack: Settings, s3: Any, sessions: sessionmaker[Session]
) -> None:
    image = text_page(["INVOICE 4711"], size=(1800, 1200), font_size=120)
    blob = stored_blob(png_bytes(image), "image/png", s3, sessions, stack)

    first = run_ocr(blob, s3, sessions, stack)
    second = run_ocr(blob, s3, sessions, stack)

    assert first == second
    with sessions() as session:
        count = session.scalar(
            select(func.count()).select_from(BlobText).where(BlobText.sha256 == blob.sha256)
        )
    assert count == 1

"""The types the workflow schedules thumbnails and OCR for are the ones the stages handle."""

from __future__ import annotations

from activities.thumbnails import IMAGE_FORMATS, PDF_CONTENT_TYPE
from conveyor_core import stage_rules


def test_thumbnails_apply_to_every_type_with_a_decoder_and_to_pdf() -> None:
    assert set(IMAGE_FORMATS) == stage_rules.THUMBNAIL_IMAGE_TYPES
    assert PDF_CONTENT_TYPE == stage_rules.PDF
    for content_type in (*IMAGE_FORMATS, PDF_CONTENT_TYPE):
        assert stage_rules.thumbnails_skip_reason(content_type) is None


def test_text_and_unknown_types_are_skipped_with_a_reason() -> None:
    for content_type in ("text/plain", "application/zip", "application/octet-stream"):
        assert stage_rules.thumbnails_skip_reason(content_type) == (
            f"no thumbnails for {content_type}"
        )
        assert stage_rules.ocr_skip_reason(content_type) == f"no OCR for {content_type}"
    assert stage_rules.ocr_skip_reason("image/jpeg") is None
    assert stage_rules.ocr_skip_reason("application/pdf") is None

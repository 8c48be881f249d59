"""Which sniffed content types each optional stage applies to.

The ingest workflow reads these to schedule only the stages that apply (a text file's
thumbnails and OCR are "skipped" without an activity); the stages keep the same check, for a
reprocess and for workflows that started before the rule.
"""

from __future__ import annotations

PDF = "application/pdf"
# The image types Pillow may decode for thumbnails (each held to its own decoders in
# activities/thumbnails.py) and Tesseract may read.
THUMBNAIL_IMAGE_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "image/tiff",
        "image/bmp",
        "image/x-ms-bmp",  # libmagic's older name for BMP
        "image/heic",
        "image/heif",
        "image/avif",
    }
)
OCR_IMAGE_TYPES = THUMBNAIL_IMAGE_TYPES


def thumbnails_skip_reason(content_type: str) -> str | None:
    """Why thumbnails do not apply to this type; None when they do."""
    if content_type in THUMBNAIL_IMAGE_TYPES or content_type == PDF:
        return None
    return f"no thumbnails for {content_type}"


def ocr_skip_reason(content_type: str) -> str | None:
    """Why OCR does not apply to this type; None when it does."""
    if content_type in OCR_IMAGE_TYPES or content_type == PDF:
        return None
    return f"no OCR for {content_type}"

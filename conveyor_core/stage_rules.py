"""Which sniffed content types the built-in optional stages apply to.

The stages' plugin specs (activities/builtin_stages.py) take their types from here, and the
activities keep the same check for a stage run on a type it does not take. Workflows that
started before stages were plugins decided with the rules of their time
(`legacy_*_skip_reason`): their histories replay with the decisions they made.
"""

from __future__ import annotations

PDF = "application/pdf"
# The image types of the rules before stages were plugins: the OCR stage still reads these.
LEGACY_IMAGE_TYPES = frozenset(
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
# Each type's Pillow decoders: an image is only ever opened as the format its bytes were
# sniffed as, so a file cannot reach a decoder its type does not name. EPS is left out on
# purpose: Pillow renders it with Ghostscript, a PostScript interpreter.
IMAGE_DECODERS: dict[str, tuple[str, ...]] = {
    "image/jpeg": ("JPEG",),
    "image/png": ("PNG",),
    "image/gif": ("GIF",),
    "image/webp": ("WEBP",),
    "image/tiff": ("TIFF",),
    "image/bmp": ("BMP", "DIB"),
    "image/x-ms-bmp": ("BMP", "DIB"),
    "image/heic": ("HEIF",),
    "image/heif": ("HEIF",),
    "image/avif": ("AVIF",),
    "image/vnd.adobe.photoshop": ("PSD",),
    "image/vnd.microsoft.icon": ("ICO",),
    "image/x-icon": ("ICO",),
    "image/x-win-bitmap": ("CUR",),
    "image/x-icns": ("ICNS",),
    "image/jp2": ("JPEG2000",),
    "image/jpx": ("JPEG2000",),
    "image/x-jp2-codestream": ("JPEG2000",),
    "image/x-tga": ("TGA",),
    "image/x-pcx": ("PCX",),
    "image/x-dcx": ("DCX",),
    "image/x-portable-bitmap": ("PPM",),
    "image/x-portable-greymap": ("PPM",),
    "image/x-portable-pixmap": ("PPM",),
    "image/x-qoi": ("QOI",),
    "image/x-xpixmap": ("XPM",),
    "image/fits": ("FITS",),
    "image/vnd.ms-dds": ("DDS",),
    "image/x-sgi": ("SGI",),
}
THUMBNAIL_IMAGE_TYPES = frozenset(IMAGE_DECODERS)
OCR_IMAGE_TYPES = LEGACY_IMAGE_TYPES


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


def legacy_thumbnails_skip_reason(content_type: str) -> str | None:
    """thumbnails_skip_reason as workflows from before stages were plugins decided it."""
    if content_type in LEGACY_IMAGE_TYPES or content_type == PDF:
        return None
    return f"no thumbnails for {content_type}"


legacy_ocr_skip_reason = ocr_skip_reason  # unchanged since: the same rule, by name

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
SVG_TYPES = frozenset({"image/svg+xml", "image/svg"})
# Office packages (zips) whose every part can be checked for outside links: previews of
# their first page (activities/previews.py).
PACKAGE_OFFICE_TYPES = frozenset(
    {
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.presentation",
        "application/vnd.oasis.opendocument.graphics",
    }
)
# The old binary office formats (and RTF): no parts to check for links, so they are drawn
# only by a LibreOffice that sees nothing else of the machine (activities/extract/sandbox.py).
# An OLE compound file libmagic could not name is drawn when its streams say Word, Excel or
# PowerPoint.
LEGACY_OFFICE_TYPES = frozenset(
    {
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "text/rtf",
        "application/rtf",
        "application/x-ole-storage",
        "application/CDFV2",
        "application/vnd.ms-office",
    }
)
# Sniffed type -> the one ffmpeg demuxer its bytes are read with.
MEDIA_DEMUXERS: dict[str, str] = {
    "video/mp4": "mov",
    "video/quicktime": "mov",
    "video/x-m4v": "mov",
    "video/3gpp": "mov",
    "audio/x-m4a": "mov",
    "audio/mp4": "mov",
    "video/webm": "matroska",
    "video/x-matroska": "matroska",
    "audio/x-matroska": "matroska",
    "video/x-msvideo": "avi",
    "video/x-flv": "flv",
    "video/ogg": "ogg",
    "video/mpeg": "mpeg",  # a program stream; a bare video stream: mpegvideo (activities/media)
    "audio/ogg": "ogg",
    "audio/mpeg": "mp3",
    "audio/x-wav": "wav",
    "audio/wav": "wav",
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/x-aiff": "aiff",
    "video/mp2t": "mpegts",  # sniffed by activities/verify.py (libmagic does not name it)
}
# Everything the thumbnails stage draws: images, a PDF's or an office document's first page,
# an SVG, a video's poster frame (audio: its duration and codec, no picture).
THUMBNAIL_TYPES = (
    THUMBNAIL_IMAGE_TYPES
    | {PDF}
    | SVG_TYPES
    | PACKAGE_OFFICE_TYPES
    | LEGACY_OFFICE_TYPES
    | set(MEDIA_DEMUXERS)
)
OCR_IMAGE_TYPES = LEGACY_IMAGE_TYPES


def thumbnails_skip_reason(content_type: str) -> str | None:
    """Why thumbnails do not apply to this type; None when they do."""
    if content_type in THUMBNAIL_TYPES:
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

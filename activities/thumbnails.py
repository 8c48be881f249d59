"""Thumbnails stage: WebP thumbnails of images and of a PDF's first page.

Thumbnails are derivatives of the blob's bytes, so they live under its hash
(`derivatives/<sha256>/thumb-<size>.webp`) and a size that is already stored is not encoded
again. Untrusted bytes are decoded with a pixel limit, and only as the format that libmagic
sniffed; PDFs are rasterised by `pdftoppm` in a subprocess with a timeout.
"""

from __future__ import annotations

import io
import re
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from PIL import Image, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.downloads import download_blob
from activities.extract import ExtractionFailed, office_to_pdf, sandbox
from activities.extract.commands import CommandFailed, CommandTimedOut, run_command
from activities.extract.kinds import classify
from activities.extract.office import NO_SANDBOX
from activities.extract.pdf import needs_password
from activities.extract.types import Beat
from activities.heartbeat import beat
from activities.image_metadata import read_image_metadata
from activities.media import MediaUnreadable, poster_frame, probe
from activities.previews import PreviewRefused, outside_link, render_svg
from conveyor_core.settings import Settings
from conveyor_core.stage_rules import (
    IMAGE_DECODERS,
    LEGACY_OFFICE_TYPES,
    MEDIA_DEMUXERS,
    PACKAGE_OFFICE_TYPES,
    SVG_TYPES,
    thumbnails_skip_reason,
)
from conveyor_core.types import (
    INVALID_IMAGE_ERROR,
    BlobRef,
    Thumbnail,
    ThumbnailsInput,
    ThumbnailsResult,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

register_heif_opener()

OUTPUT_FORMAT = "WEBP"
OUTPUT_EXTENSION = "webp"
OUTPUT_CONTENT_TYPE = "image/webp"
WEBP_QUALITY = 80
CACHE_CONTROL = "public, max-age=31536000, immutable"
# Like Image.thumbnail(): decode (JPEG draft) and reduce to at least twice the target, then
# resample; fast, and indistinguishable from a full-resolution resample at thumbnail sizes.
REDUCING_GAP = 2.0
PDF_CONTENT_TYPE = "application/pdf"
PDF_RENDER_TIMEOUT_SECONDS = 30.0
OFFICE_TIMEOUT_SECONDS = 60.0  # LibreOffice's conversion of a document to PDF
MEDIA_TIMEOUT_SECONDS = 60.0  # ffprobe, and ffmpeg's poster frame

# Sniffed type -> the only Pillow decoders allowed to read it, so bytes sniffed as one format
# never reach another format's parser.
_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}


def _no_beat() -> None:
    pass


class InvalidImageData(Exception):
    """Bytes that cannot become a thumbnail; the message is a one-sentence reason."""


@dataclass(frozen=True)
class RenderedThumbnail:
    size: int
    width: int
    height: int
    data: bytes


def thumbnail_key(sha256: str, size: int) -> str:
    return f"derivatives/{sha256}/thumb-{size}.{OUTPUT_EXTENSION}"


def fit(source: tuple[int, int], size: int) -> tuple[int, int]:
    """The dimensions whose longest side is `size`, keeping the aspect; never larger."""
    width, height = source
    longest = max(width, height)
    if longest <= size:
        return source
    scale = size / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def render_thumbnails(
    path: Path, sizes: Sequence[int], *, formats: Sequence[str], max_pixels: int
) -> list[RenderedThumbnail]:
    """Decodes the image at `path` once and encodes one WebP per size (longest side).

    Raises InvalidImageData when the file is not a decodable image of one of `formats`, or
    has more than `max_pixels` pixels.
    """
    try:
        with Image.open(path, formats=list(formats)) as im:
            _check_pixels(im.size, max_pixels)
            source = _decode(im, max(sizes))
            return [_encode(source, size) for size in sizes]
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InvalidImageData(_bomb_reason(str(e), max_pixels)) from e
    except UnidentifiedImageError as e:
        raise InvalidImageData(f"the data is not a valid {formats[0]} image") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InvalidImageData(_decode_reason(e)) from e


def render_pdf_first_page(
    pdf: Path, longest_side: int, *, timeout: float, beat: Beat = _no_beat
) -> Path:
    """Rasterises page 1 of `pdf` to `<stem>-page1.png` beside it, longest side `longest_side`.

    `beat` is called every few seconds while pdftoppm runs (the activity's heartbeat).
    """
    prefix = pdf.with_name(f"{pdf.stem}-page1")
    command = ["pdftoppm", "-f", "1", "-l", "1", "-singlefile", "-png"]
    command += ["-scale-to", str(longest_side), str(pdf), str(prefix)]
    try:
        run_command(command, timeout, beat)
    except CommandTimedOut as e:
        raise InvalidImageData(f"rendering the PDF's first page took over {timeout:g} s") from e
    except CommandFailed as e:
        if needs_password(e):
            raise InvalidImageData("encrypted PDF: its pages need the password") from e
        raise InvalidImageData(f"the PDF could not be rendered: {e}") from e
    page = prefix.with_name(f"{prefix.name}.png")
    if not page.exists():
        raise InvalidImageData("the PDF has no page to render")
    return page


@dataclass
class Drawn:
    """What a file's thumbnails are drawn from, or why none are, and what was found out."""

    source: Path | None = None  # an image of one of `formats`
    formats: Sequence[str] = ("PNG",)
    metadata: dict[str, Any] = field(default_factory=dict)
    skipped_reason: str | None = None
    thumbnails: list[RenderedThumbnail] = field(default_factory=list)


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise InvalidImageData(
            f"image is larger than the {max_pixels}-pixel limit ({width}x{height})"
        )


def _decode(im: Image.Image, largest: int) -> Image.Image:
    """The upright, RGB or RGBA pixels, decoded no larger than the largest thumbnail needs."""
    target = fit(im.size, largest)
    if target != im.size:
        im.draft(None, (int(target[0] * REDUCING_GAP), int(target[1] * REDUCING_GAP)))
    im.load()
    ImageOps.exif_transpose(im, in_place=True)
    return _to_rgb(im)


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("RGB", "RGBA"):
        return im
    if im.mode in _SIXTEEN_BIT_MODES:  # a plain convert would clip 16-bit values to white
        return im.convert("I").point(lambda v: v * (1 / 256)).convert("RGB")
    return im.convert("RGBA" if im.has_transparency_data else "RGB")


def _encode(source: Image.Image, size: int) -> RenderedThumbnail:
    width, height = fit(source.size, size)
    thumb = source
    if (width, height) != source.size:
        thumb = source.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    buffer = io.BytesIO()
    thumb.save(buffer, OUTPUT_FORMAT, quality=WEBP_QUALITY)
    return RenderedThumbnail(size=size, width=width, height=height, data=buffer.getvalue())


def _bomb_reason(message: str, max_pixels: int) -> str:
    found = re.search(r"\((\d+) pixels\)", message)
    pixels = f" ({found.group(1)} pixels)" if found else ""
    return f"image is larger than the {max_pixels}-pixel limit{pixels}"


def _decode_reason(error: Exception) -> str:
    text = str(error)
    if "truncated" in text or isinstance(error, EOFError):
        return "image data is truncated"
    return f"image data could not be decoded: {text or type(error).__name__}"


class ThumbnailActivities:
    def __init__(self, s3: S3Client, settings: Settings) -> None:
        self._s3 = s3
        self._max_pixels = settings.max_image_pixels
        # Pillow's own check at open time, a second line behind _check_pixels that also
        # guards any other code in this worker process that decodes images.
        Image.MAX_IMAGE_PIXELS = settings.max_image_pixels
        warnings.simplefilter("error", Image.DecompressionBombWarning)

    @activity.defn(name="make_thumbnails")
    def make_thumbnails(self, inp: ThumbnailsInput) -> ThumbnailsResult:
        blob = inp.blob
        skipped = thumbnails_skip_reason(blob.content_type)
        if skipped is not None:
            return ThumbnailsResult(skipped_reason=skipped)
        sizes = list(dict.fromkeys(inp.sizes))
        if not sizes or min(sizes) < 1:
            raise ApplicationError(
                f"thumbnail sizes must be positive, got {inp.sizes}", non_retryable=True
            )
        stored = {size: self._stored(blob, size) for size in sizes}
        missing = sorted((size for size, thumb in stored.items() if thumb is None), reverse=True)
        drawn = Drawn()
        if missing:
            drawn = self._render(blob, missing)
            for rendered in drawn.thumbnails:
                stored[rendered.size] = self._store(blob, rendered)
                beat()
        if drawn.skipped_reason is not None:
            return ThumbnailsResult(skipped_reason=drawn.skipped_reason, metadata=drawn.metadata)
        thumbnails = [thumb for thumb in stored.values() if thumb is not None]
        return ThumbnailsResult(
            thumbnails=thumbnails, detail=f"{len(thumbnails)} sizes", metadata=drawn.metadata
        )

    def _render(self, blob: BlobRef, sizes: list[int]) -> Drawn:
        with tempfile.TemporaryDirectory(prefix="conveyor-thumbnails-") as tmp:
            path = Path(tmp) / "source"
            download_blob(self._s3, blob, path, beat)
            try:
                drawn = self._draw(blob.content_type, path, max(sizes))
                if drawn.source is not None:
                    beat()
                    drawn.thumbnails = render_thumbnails(
                        drawn.source, sizes, formats=drawn.formats, max_pixels=self._max_pixels
                    )
                return drawn
            except (InvalidImageData, PreviewRefused, MediaUnreadable, ExtractionFailed) as e:
                raise ApplicationError(str(e), type=INVALID_IMAGE_ERROR, non_retryable=True) from e

    def _draw(self, content_type: str, path: Path, longest: int) -> Drawn:
        """What the thumbnails are drawn from (an image Pillow decodes), and what was found."""
        timeout = PDF_RENDER_TIMEOUT_SECONDS
        formats = IMAGE_DECODERS.get(content_type)
        if formats is not None:
            return Drawn(path, formats, read_image_metadata(path, formats))
        if content_type in SVG_TYPES:
            return Drawn(render_svg(path, longest, timeout, beat))
        if content_type in PACKAGE_OFFICE_TYPES:
            link = outside_link(path)
            if link is not None:
                reason = f"no preview: the document loads something from outside itself ({link})"
                return Drawn(skipped_reason=reason)
            pdf = office_to_pdf(path, path.parent, OFFICE_TIMEOUT_SECONDS, beat)
            return Drawn(render_pdf_first_page(pdf, longest, timeout=timeout, beat=beat))
        if content_type in LEGACY_OFFICE_TYPES:
            return _draw_legacy_office(content_type, path, longest, beat)
        if content_type in MEDIA_DEMUXERS:
            info = probe(path, content_type, MEDIA_TIMEOUT_SECONDS, beat)
            if "video_codec" not in info:
                return Drawn(skipped_reason=f"no picture in {content_type}", metadata=info)
            poster = poster_frame(
                path, content_type, info, longest, self._max_pixels, MEDIA_TIMEOUT_SECONDS, beat
            )
            return Drawn(poster, metadata=info)
        return Drawn(render_pdf_first_page(path, longest, timeout=timeout, beat=beat))

    def _stored(self, blob: BlobRef, size: int) -> Thumbnail | None:
        """The thumbnail already in the store, or None if it must be made."""
        key = thumbnail_key(blob.sha256, size)
        try:
            head = self._s3.head_object(Bucket=blob.bucket, Key=key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        metadata = head.get("Metadata", {})
        try:
            width, height = int(metadata["width"]), int(metadata["height"])
        except (KeyError, ValueError):
            return None  # not written by us: make it again, with its dimensions
        return Thumbnail(size, width, height, blob.bucket, key, OUTPUT_CONTENT_TYPE)

    def _store(self, blob: BlobRef, rendered: RenderedThumbnail) -> Thumbnail:
        key = thumbnail_key(blob.sha256, rendered.size)
        self._s3.put_object(
            Bucket=blob.bucket,
            Key=key,
            Body=rendered.data,
            ContentType=OUTPUT_CONTENT_TYPE,
            CacheControl=CACHE_CONTROL,
            Metadata={"width": str(rendered.width), "height": str(rendered.height)},
        )
        return Thumbnail(
            size=rendered.size,
            width=rendered.width,
            height=rendered.height,
            bucket=blob.bucket,
            key=key,
            content_type=OUTPUT_CONTENT_TYPE,
        )


def _draw_legacy_office(content_type: str, path: Path, longest: int, beat: Beat) -> Drawn:
    """The first page of a .doc, .xls, .ppt or RTF file, drawn in the sandbox only."""
    kind = classify(path, content_type)
    if kind is None or kind.office_format is None:
        return Drawn(skipped_reason=f"no thumbnails for {content_type}: not an office document")
    if not sandbox.available():
        return Drawn(skipped_reason=f"no preview: {NO_SANDBOX}")
    pdf = office_to_pdf(
        path,
        path.parent,
        OFFICE_TIMEOUT_SECONDS,
        beat,
        office_format=kind.office_format,
        sandbox_only=True,
    )
    return Drawn(render_pdf_first_page(pdf, longest, timeout=PDF_RENDER_TIMEOUT_SECONDS, beat=beat))

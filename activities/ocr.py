"""OCR stage: Tesseract over images and the first pages of PDFs (rasterised by poppler).

Untrusted bytes only ever reach Pillow (with a pixel limit) or a subprocess (pdfinfo,
pdftoppm, tesseract) with a deadline; a bad document fails the stage with a reason.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageOps
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.downloads import download_blob
from activities.extract import ExtractionFailed
from activities.extract.commands import CommandFailed, CommandTimedOut, run_command
from activities.extract.pdf import needs_password, pages_without_text
from activities.extract.types import Beat
from activities.heartbeat import beat
from conveyor_core.db.models import BlobText
from conveyor_core.db.session import transaction
from conveyor_core.settings import Settings
from conveyor_core.stage_rules import PDF, ocr_skip_reason
from conveyor_core.types import INVALID_DOCUMENT_ERROR, OcrInput, OcrResult

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Text carried in heartbeat details for resuming; above this only progress is reported.
RESUME_TEXT_LIMIT = 256 * 1024
# Tesseract's OpenMP threads fight each other when several pages run at once (STACK.md).
TESSERACT_ENV = {**os.environ, "OMP_THREAD_LIMIT": "1"}

EVERY_PAGE_HAS_TEXT = "every page has a text layer (read by the text stage)"
_PAGE_SIZE = re.compile(r"^Page\s+(\d+) size:\s+([\d.]+) x ([\d.]+) pts", re.MULTILINE)
_PAGES = re.compile(r"^Pages:\s+(\d+)", re.MULTILINE)


def invalid(reason: str) -> ApplicationError:
    return ApplicationError(reason, type=INVALID_DOCUMENT_ERROR, non_retryable=True)


def tesseract(image: Path, languages: str, timeout: float, beat: Beat, env: dict[str, str]) -> str:
    text = run_command(["tesseract", str(image), "stdout", "-l", languages], timeout, beat, env)
    # Postgres text cannot hold NUL; the page separator is ours to add.
    return text.replace("\x00", "").replace("\f", "").strip()


@dataclass(frozen=True)
class PdfInfo:
    pages: int
    sizes_pts: dict[int, tuple[float, float]]  # page -> (width, height), first pages only


def pdf_info(path: Path, last_page: int, timeout: float, beat: Beat) -> PdfInfo:
    try:
        out = run_command(["pdfinfo", "-f", "1", "-l", str(last_page), str(path)], timeout, beat)
    except CommandFailed as e:
        if needs_password(e):
            raise invalid("Encrypted PDF: its text needs the password.") from e
        raise invalid(f"The PDF could not be read (pdfinfo: {e}).") from e
    except CommandTimedOut as e:
        raise invalid(f"Reading the PDF's page count timed out after {timeout:g} s.") from e
    pages = _PAGES.search(out)
    if pages is None:
        raise invalid("The PDF's page count could not be read.")
    sizes = {int(n): (float(w), float(h)) for n, w, h in _PAGE_SIZE.findall(out)}
    return PdfInfo(pages=int(pages.group(1)), sizes_pts=sizes)


def page_dpi(size_pts: tuple[float, float] | None, dpi: int, max_pixels: int) -> int:
    """The render resolution, lowered for huge pages so the bitmap stays within the limit."""
    if size_pts is None:
        return dpi
    area_in2 = (size_pts[0] / 72) * (size_pts[1] / 72)
    if area_in2 <= 0:
        return dpi
    return max(1, min(dpi, math.floor(math.sqrt(max_pixels / area_in2))))


def render_pdf_page(
    pdf: Path, page: int, dpi: int, out_dir: Path, timeout: float, beat: Beat
) -> Path:
    prefix = out_dir / f"page-{page}"
    args = ["pdftoppm", "-r", str(dpi), "-f", str(page), "-l", str(page), "-png", "-singlefile"]
    try:
        run_command([*args, str(pdf), str(prefix)], timeout, beat)
    except CommandFailed as e:
        raise invalid(f"Page {page} of the PDF could not be rendered (pdftoppm: {e}).") from e
    except CommandTimedOut as e:
        raise invalid(f"Rendering page {page} of the PDF timed out after {timeout:g} s.") from e
    png = prefix.with_suffix(".png")
    if not png.exists():
        raise invalid(f"Page {page} of the PDF could not be rendered.")
    return png


def ocr_page(image: Path, page: int, settings: Settings, beat: Beat, env: dict[str, str]) -> str:
    timeout = settings.ocr_page_timeout_seconds
    try:
        return tesseract(image, settings.ocr_languages, timeout, beat, env)
    except CommandTimedOut as e:
        raise invalid(f"OCR of page {page} timed out after {timeout} s.") from e
    except CommandFailed as e:
        # Tesseract reads the PNG we wrote ourselves: a failure is ours (e.g. a missing
        # language pack), so it stays retryable.
        raise RuntimeError(f"tesseract failed on page {page}: {e}") from e


def image_to_png(source: Path, out: Path, max_pixels: int) -> None:
    """Decodes an untrusted image within the pixel limit, upright and opaque, as PNG.

    Only the first frame of an animation or multi-page TIFF is read.
    """
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with Image.open(source) as img:
            if img.width * img.height > max_pixels:
                raise invalid(
                    f"The image has {img.width}x{img.height} pixels, "
                    f"more than the limit of {max_pixels}."
                )
            upright = ImageOps.exif_transpose(img)
            _flatten(upright).save(out, format="PNG")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise invalid(f"The image has more pixels than the limit of {max_pixels}.") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise invalid(f"The image could not be decoded ({e}).") from e


def _flatten(img: Image.Image) -> Image.Image:
    """Transparent pixels on white: dark text on a transparent background stays readable."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode in ("1", "L", "RGB"):
        return img
    return img.convert("RGB")


def page_detail(languages: str, done: int, total: int) -> str:
    if done < total:
        return f"{languages}, {done} of {total} pages"
    return f"{languages}, {done} page" + ("" if done == 1 else "s")


def _resume_texts(sha256: str) -> list[str]:
    """Pages OCR'd by an earlier attempt of this activity, from its last heartbeat."""
    details: Sequence[Any] = activity.info().heartbeat_details
    if not details or not isinstance(details[0], dict):
        return []
    last = details[0]
    texts = last.get("texts")
    if last.get("sha256") != sha256 or not isinstance(texts, list):
        return []
    return [str(t) for t in texts]


def _beat_progress(sha256: str, texts: list[str]) -> None:
    resumable = sum(len(t) for t in texts) <= RESUME_TEXT_LIMIT
    beat({"sha256": sha256, "page": len(texts), "texts": texts if resumable else None})


class OcrActivities:
    def __init__(self, s3: S3Client, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._s3 = s3
        self._sessions = sessions
        self._settings = settings
        _register_heif()

    @activity.defn(name="ocr_blob")
    def ocr_blob(self, inp: OcrInput) -> OcrResult:
        """OCRs an image or the first `ocr_max_pages` pages of a PDF and stores the text."""
        blob = inp.blob
        skipped = ocr_skip_reason(blob.content_type)
        if skipped is not None:
            return OcrResult(skipped_reason=skipped)
        with tempfile.TemporaryDirectory(prefix="conveyor-ocr-") as tmp:
            work = Path(tmp)
            source = work / "source"
            download_blob(self._s3, blob, source, beat)
            scanned: set[int] | None = None  # the PDF pages to OCR; None: all
            if blob.content_type == PDF and inp.skip_text_layer:
                scanned = self._pages_without_text(source, work)
                if not scanned:
                    return OcrResult(skipped_reason=EVERY_PAGE_HAS_TEXT)
            if blob.content_type == PDF:
                texts, total = self._ocr_pdf(blob.sha256, source, work, scanned)
            else:
                texts, total = self._ocr_image(source, work), 1
        text = "\n\f\n".join(texts)
        self._store(blob.sha256, text, len(texts))
        done = len(texts) if scanned is None else len(scanned & set(range(1, len(texts) + 1)))
        detail = page_detail(self._settings.ocr_languages, done, total)
        if scanned is not None and done < len(texts):
            detail += f" ({len(texts) - done} with a text layer)"
        return OcrResult(pages=len(texts), characters=len(text), detail=detail)

    def _pages_without_text(self, pdf: Path, work: Path) -> set[int]:
        """The first `ocr_max_pages` pages whose text layer is empty (scanned pages)."""
        s = self._settings
        try:
            empty = pages_without_text(pdf, s.ocr_max_pages, s.ocr_page_timeout_seconds, beat)
        except ExtractionFailed as e:
            raise invalid(e.reason) from e
        return set(empty)

    def _ocr_image(self, source: Path, work: Path) -> list[str]:
        png = work / "image.png"
        image_to_png(source, png, self._settings.max_image_pixels)
        return [ocr_page(png, 1, self._settings, beat, TESSERACT_ENV)]

    def _ocr_pdf(
        self, sha256: str, pdf: Path, work: Path, only: set[int] | None
    ) -> tuple[list[str], int]:
        s = self._settings
        texts = _resume_texts(sha256)

        def beat() -> None:
            _beat_progress(sha256, texts)

        info = pdf_info(pdf, s.ocr_max_pages, s.ocr_page_timeout_seconds, beat)
        if info.pages < 1:
            raise invalid("The PDF has no pages.")
        last = min(info.pages, s.ocr_max_pages)
        for page in range(len(texts) + 1, last + 1):
            if only is not None and page not in only:
                texts.append("")  # its text layer is the text stage's
                continue
            dpi = page_dpi(info.sizes_pts.get(page), s.pdf_render_dpi, s.max_image_pixels)
            png = render_pdf_page(pdf, page, dpi, work, s.ocr_page_timeout_seconds, beat)
            texts.append(ocr_page(png, page, s, beat, TESSERACT_ENV))
            png.unlink()
            beat()
        return texts, info.pages

    def _store(self, sha256: str, text: str, pages: int) -> None:
        languages = self._settings.ocr_languages
        with transaction(self._sessions) as session:
            session.execute(
                insert(BlobText)
                .values(sha256=sha256, source="ocr", text=text, pages=pages, languages=languages)
                .on_conflict_do_update(
                    index_elements=[BlobText.sha256, BlobText.source],
                    set_={"text": text, "pages": pages, "languages": languages},
                )
            )


def _register_heif() -> None:
    """HEIC/HEIF decode through pillow-heif where it is installed (AVIF is in Pillow)."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return
    register_heif_opener()

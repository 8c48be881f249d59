"""A PDF's text layer, by poppler's pdfinfo and pdftotext.

Pages are read up to the limit; pages whose text layer is empty are named (1-based) so
OCR can fill them. Pages are joined with "\\n\\f\\n", as the OCR stage joins its pages, so
page n is the n-th form-feed-separated piece.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from activities.extract import plain
from activities.extract.commands import CommandFailed, CommandTimedOut, run_command
from activities.extract.types import Beat, Extracted, ExtractionFailed, TextLimits

PAGE_SEPARATOR = "\n\f\n"
_FIELD = re.compile(r"^(Title|Author|Pages):[ \t]*(.*?)[ \t]*$", re.MULTILINE)


def needs_password(error: CommandFailed) -> bool:
    """poppler's tools refuse an encrypted PDF without its password so."""
    return "Incorrect password" in str(error)


def _run(args: list[str], what: str, timeout: float, beat: Beat) -> str:
    try:
        return run_command(args, timeout, beat)
    except CommandFailed as e:
        if needs_password(e):
            raise ExtractionFailed("Encrypted PDF: its text needs the password.") from e
        raise ExtractionFailed(f"Not a readable PDF ({args[0]}: {e}).") from e
    except CommandTimedOut as e:
        raise ExtractionFailed(f"{what} took longer than {timeout:g} s.") from e


def pdf_info(path: Path, timeout: float, beat: Beat) -> dict[str, str | int]:
    """pages, and title and author when the PDF names them."""
    out = _run(
        ["pdfinfo", "-enc", "UTF-8", str(path)], "Reading the PDF's page count", timeout, beat
    )
    fields = dict(_FIELD.findall(out))
    if not fields.get("Pages", "").isdigit():
        raise ExtractionFailed("Not a readable PDF: its page count could not be read.")
    info: dict[str, str | int] = {"pages": int(fields["Pages"])}
    for name in ("Title", "Author"):
        if fields.get(name):
            info[name.lower()] = fields[name]
    return info


def pages_without_text(path: Path, last_page: int, timeout: float, beat: Beat) -> list[int]:
    """Pages 1..last_page (of those the PDF has) whose text layer is empty: pdftotext alone,
    for OCR to know what to read (it counts the pages itself)."""
    with tempfile.TemporaryDirectory(prefix="pdftotext-") as scratch:
        out = Path(scratch) / "text.txt"
        _run(
            ["pdftotext", "-enc", "UTF-8", "-f", "1", "-l", str(last_page), str(path), str(out)],
            "Reading the PDF's text",
            timeout,
            beat,
        )
        # pdftotext ends every page with a form feed: the piece after the last one is not a page.
        pages = out.read_text("utf-8", "replace").split("\f")[:-1][:last_page]
    return [n for n, page in enumerate(pages, start=1) if not page.strip()]


def extract_pdf(path: Path, limits: TextLimits, beat: Beat, work: Path) -> Extracted:
    info = pdf_info(path, limits.timeout_seconds, beat)
    pages = int(info["pages"])
    last = min(pages, limits.max_pages)
    if last == 0:
        return Extracted(text="", kind="pdf text layer", pages=0, metadata=info)
    with tempfile.TemporaryDirectory(dir=work, prefix="pdftotext-") as scratch:
        out = Path(scratch) / "text.txt"
        _run(
            ["pdftotext", "-enc", "UTF-8", "-eol", "unix", "-f", "1", "-l", str(last)]
            + [str(path), str(out)],
            "Reading the PDF's text",
            limits.timeout_seconds,
            beat,
        )
        data, cut = plain.read_head(out, limits.max_chars * plain.BYTES_PER_CHAR)
    text = data.decode("utf-8", "replace").replace("\x00", "")
    # pdftotext ends every page with a form feed; a cut read may end inside a page.
    texts = [page.strip() for page in text.split("\f")][:last]
    empty = [n for n, page in enumerate(texts, start=1) if not page]
    if not cut:
        empty += range(len(texts) + 1, last + 1)  # pages that gave nothing at all
    return Extracted(
        text=PAGE_SEPARATOR.join(texts),
        kind="pdf text layer",
        pages=pages,
        truncated=cut or last < pages,
        pages_without_text=empty,
        metadata=info,
    )

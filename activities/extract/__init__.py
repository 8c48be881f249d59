"""Text out of a local file: PDF text layers, plain text, HTML, e-mail, office documents
(through LibreOffice) and archive listings. No Temporal, database or object store here:
a path goes in, an `Extracted` comes out, or ExtractionFailed (a one-sentence reason) or
NotApplicable (no extractor for the type).
"""

from __future__ import annotations

from pathlib import Path

from activities.extract import archives, html, mail, office, pdf, plain
from activities.extract.kinds import Family, classify
from activities.extract.office import office_to_pdf
from activities.extract.types import Beat, Extracted, ExtractionFailed, NotApplicable, TextLimits

__all__ = [
    "Beat",
    "Extracted",
    "ExtractionFailed",
    "NotApplicable",
    "TextLimits",
    "extract_text",
    "office_to_pdf",
]


def extract_text(
    path: Path, content_type: str, limits: TextLimits, beat: Beat, work: Path
) -> Extracted:
    """The text of the file at `path`, sniffed as `content_type` (libmagic, first 64 KiB).

    `work` is a folder for scratch files (LibreOffice profiles, converted documents); what
    is made there is removed before this returns. `beat` is called at least every few
    seconds while a program runs. Text longer than `limits.max_chars` is cut and marked
    truncated; NUL characters and unpaired surrogates never come out.
    """
    kind = classify(path, content_type)
    if kind is None:
        raise NotApplicable(f"no text extractor for {content_type}")
    family = kind.family
    if family is Family.PDF:
        result = pdf.extract_pdf(path, limits, beat, work)
    elif family is Family.TEXT:
        result = plain.extract_plain(path, limits.max_chars)
    elif family is Family.HTML:
        result = html.extract_html(path, limits.max_chars)
    elif family is Family.EMAIL:
        result = mail.extract_email(path)
    elif family is Family.ZIP:
        result = archives.list_zip(path, limits.max_archive_entries)
    elif family in (Family.TAR, Family.COMPRESSED):
        result = archives.list_tar(path, limits.max_archive_entries, limits.timeout_seconds, beat)
    else:
        result = office.extract_office(path, kind, limits, beat, work)
    return _within(result, limits.max_chars)


def _within(result: Extracted, max_chars: int) -> Extracted:
    # Postgres text holds neither NUL nor what is not UTF-8 (a lone surrogate).
    text = result.text.replace("\x00", "")
    text = text.encode("utf-8", "replace").decode("utf-8")
    if len(text) > max_chars:
        text = text[:max_chars]
        result.truncated = True
    result.text = text
    return result

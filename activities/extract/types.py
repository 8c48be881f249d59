"""What text extraction takes and gives back, and how it says no."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

Beat = Callable[[], None]


@dataclass(frozen=True)
class TextLimits:
    max_chars: int = 1_000_000  # text kept; the rest is cut and `truncated` says so
    max_pages: int = 200  # PDF pages read (presentations are read as PDFs)
    timeout_seconds: float = 60  # per subprocess (pdftotext, LibreOffice) or archive listing
    max_archive_entries: int = 10_000


@dataclass
class Extracted:
    text: str
    kind: str  # what was read, for people: "pdf text layer", "plain text (utf-8)", "e-mail"
    pages: int | None = None
    truncated: bool = False
    pages_without_text: list[int] = field(default_factory=list)  # PDF, 1-based, for OCR
    metadata: dict[str, str | int] = field(default_factory=dict)


class ExtractionFailed(Exception):
    """The file is of a type we read, but it cannot be read; the message is one sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotApplicable(Exception):
    """No extractor reads this type of file."""

"""The text stage: a document's own text (a PDF's text layer, plain text, HTML, e-mail,
office documents through LibreOffice, archive listings), kept for full-text search beside
what OCR reads, with the language it is in.

Untrusted bytes only reach the extractors in activities/extract, each bounded in time and
in the text it keeps; a document that cannot be read fails the stage with a reason.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.downloads import download_blob
from activities.extract import ExtractionFailed, NotApplicable, TextLimits, extract_text
from activities.heartbeat import beat
from activities.languages import detect_language, load_model
from conveyor_core.db.models import BlobText
from conveyor_core.db.session import transaction
from conveyor_core.settings import Settings
from conveyor_core.stages import StageInput, StageOutput
from conveyor_core.types import INVALID_DOCUMENT_ERROR

SOURCE = "text"  # blob_text.source: OCR's rows are "ocr"


class TextStage:
    def __init__(self, s3: Any, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._s3 = s3
        self._sessions = sessions
        self._limits = TextLimits(
            max_chars=settings.text_max_chars,
            max_pages=settings.text_max_pages,
            timeout_seconds=settings.text_timeout_seconds,
        )
        load_model()

    @activity.defn(name="stage_text")
    def run(self, inp: StageInput) -> StageOutput:
        blob = inp.blob
        with tempfile.TemporaryDirectory(prefix="conveyor-text-") as tmp:
            work = Path(tmp)
            source = work / "source"
            download_blob(self._s3, blob, source, beat)
            try:
                found = extract_text(source, blob.content_type, self._limits, beat, work)
            except NotApplicable:
                return StageOutput(skipped_reason=f"no text for {blob.content_type}")
            except ExtractionFailed as e:
                raise ApplicationError(
                    e.reason, type=INVALID_DOCUMENT_ERROR, non_retryable=True
                ) from e
        language = detect_language(found.text)
        self._store(blob.sha256, found.text, found.pages or 1, language or "")
        metadata: dict[str, Any] = dict(found.metadata)
        if language is not None:
            metadata["language"] = language
        detail = f"{found.kind}, {len(found.text)} characters"
        if found.truncated:
            detail += f" (cut at {self._limits.max_chars})"
        return StageOutput(detail=detail, metadata=metadata)

    def _store(self, sha256: str, text: str, pages: int, language: str) -> None:
        with transaction(self._sessions) as session:
            session.execute(
                insert(BlobText)
                .values(sha256=sha256, source=SOURCE, text=text, pages=pages, languages=language)
                .on_conflict_do_update(
                    index_elements=[BlobText.sha256, BlobText.source],
                    set_={"text": text, "pages": pages, "languages": language},
                )
            )

"""The built-in stages, registered as plugins exactly as a third party's would be
(pyproject.toml: entry points `conveyor.stages`).

Each stage's activity takes a StageInput and answers a StageOutput; the typed activities
behind them (scan_blob, make_thumbnails, ocr_blob) stay registered for workflows that
started before stages were plugins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.extract import kinds
from activities.ocr import OcrActivities
from activities.scan import ARCHIVE_TYPES, ScanActivities
from activities.text import TextStage
from activities.thumbnails import ThumbnailActivities
from conveyor_core.stage_rules import OCR_IMAGE_TYPES, PDF, THUMBNAIL_TYPES
from conveyor_core.stages import (
    UNSCANNED_SUFFIX,
    StageContext,
    StageInput,
    StageOutput,
    StagePlugin,
    StageSpec,
)
from conveyor_core.types import (
    INVALID_DOCUMENT_ERROR,
    INVALID_IMAGE_ERROR,
    SCAN_TOO_LARGE_ERROR,
    OcrInput,
    ScanInput,
    ThumbnailsInput,
)


class ScanStage:
    def __init__(self, scan: ScanActivities, limit: int) -> None:
        self._scan = scan
        self._limit = limit

    @activity.defn(name="stage_scan")
    def run(self, inp: StageInput) -> StageOutput:
        blob, limit = inp.blob, self._limit
        if blob.size > limit and inp.options.get("scan_oversize") == "serve_unscanned":
            if blob.content_type in ARCHIVE_TYPES:
                raise ApplicationError(
                    f"too large to scan ({blob.size} bytes, limit {limit}): an archive is "
                    "never served unscanned",
                    type=SCAN_TOO_LARGE_ERROR,
                    non_retryable=True,
                )
            reason = f"too large to scan ({blob.size} bytes, limit {limit}){UNSCANNED_SUFFIX}"
            return StageOutput(skipped_reason=reason)
        result = self._scan.scan_blob(ScanInput(blob=blob))
        if result.infected:
            return StageOutput(detail=result.detail, verdict=result.detail)
        return StageOutput(detail=result.detail)


class ThumbnailsStage:
    def __init__(self, thumbnails: ThumbnailActivities, sizes: list[int]) -> None:
        self._thumbnails = thumbnails
        self._sizes = sizes

    @activity.defn(name="stage_thumbnails")
    def run(self, inp: StageInput) -> StageOutput:
        sizes = inp.options.get("thumbnail_sizes") or self._sizes
        made = self._thumbnails.make_thumbnails(ThumbnailsInput(blob=inp.blob, sizes=list(sizes)))
        return StageOutput(
            skipped_reason=made.skipped_reason,
            detail=made.detail,
            thumbnails=made.thumbnails,
            metadata=made.metadata,
        )


class OcrStage:
    def __init__(self, ocr: OcrActivities) -> None:
        self._ocr = ocr

    @activity.defn(name="stage_ocr")
    def run(self, inp: StageInput) -> StageOutput:
        result = self._ocr.ocr_blob(OcrInput(blob=inp.blob, skip_text_layer=True))
        return StageOutput(skipped_reason=result.skipped_reason, detail=result.detail)


def _scan(ctx: StageContext) -> Sequence[Callable[..., Any]]:
    scan = ScanActivities(ctx.s3, ctx.settings)
    return [ScanStage(scan, ctx.settings.scan_max_bytes).run]


def _thumbnails(ctx: StageContext) -> Sequence[Callable[..., Any]]:
    made = ThumbnailActivities(ctx.s3, ctx.settings)
    return [ThumbnailsStage(made, list(ctx.settings.thumbnail_sizes)).run]


def _text(ctx: StageContext) -> Sequence[Callable[..., Any]]:
    return [TextStage(ctx.s3, ctx.sessions, ctx.settings).run]


def _ocr(ctx: StageContext) -> Sequence[Callable[..., Any]]:
    return [OcrStage(OcrActivities(ctx.s3, ctx.sessions, ctx.settings)).run]


# The scanner being down fails the file after about 15 s of retries: never ready unscanned.
SCAN = StagePlugin(
    spec=StageSpec(
        name="scan",
        activity="stage_scan",
        content_types=("*",),
        task_queue="scan",
        start_to_close_seconds=3600,
        heartbeat_seconds=20,  # streams to clamd: beats on every chunk
        max_attempts=5,
        non_retryable_errors=(SCAN_TOO_LARGE_ERROR,),
        gate=True,
        order=0,
    ),
    activities=_scan,
)
MEDIA_ERRORS = (INVALID_IMAGE_ERROR, INVALID_DOCUMENT_ERROR)
THUMBNAILS = StagePlugin(
    spec=StageSpec(
        name="thumbnails",
        activity="stage_thumbnails",
        content_types=tuple(sorted(THUMBNAIL_TYPES)),
        start_to_close_seconds=300,
        non_retryable_errors=MEDIA_ERRORS,
        writes=("derivatives", "metadata"),
        order=10,
        batchable=True,
    ),
    activities=_thumbnails,
)
OCR = StagePlugin(
    spec=StageSpec(
        name="ocr",
        activity="stage_ocr",
        content_types=(*sorted(OCR_IMAGE_TYPES), PDF),
        label="OCR",
        start_to_close_seconds=3600,
        non_retryable_errors=MEDIA_ERRORS,
        writes=("text",),
        order=30,
        batchable=True,
    ),
    activities=_ocr,
)
# Everything with text of its own; the extractors look inside a zip or an OLE file to tell
# an office document from an archive.
TEXT = StagePlugin(
    spec=StageSpec(
        name="text",
        activity="stage_text",
        content_types=(
            "text/*",
            "message/rfc822",
            PDF,
            "application/xhtml+xml",
            *sorted(kinds.OFFICE_TYPES),
            *sorted(kinds.OLE_TYPES),
            *sorted(kinds.ZIP_TYPES),
            *sorted(kinds.TAR_TYPES),
            *sorted(kinds.COMPRESSED_TYPES),
            *sorted(kinds.TEXT_APPLICATION_TYPES),
        ),
        start_to_close_seconds=900,
        non_retryable_errors=MEDIA_ERRORS,
        writes=("text", "metadata"),
        order=20,
        batchable=True,
    ),
    activities=_text,
)

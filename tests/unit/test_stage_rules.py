"""The types the built-in stages take, and the rules old workflow histories replay with."""

from __future__ import annotations

from PIL import Image

from activities.builtin_stages import OCR, SCAN, TEXT, THUMBNAILS
from activities.thumbnails import PDF_CONTENT_TYPE
from conveyor_core import stage_rules
from conveyor_core.settings import Settings
from conveyor_core.stages import plan_for


def test_every_thumbnail_type_names_decoders_pillow_has_and_the_stage_takes_it() -> None:
    Image.init()
    for content_type, decoders in stage_rules.IMAGE_DECODERS.items():
        assert decoders and all(d in Image.OPEN for d in decoders), content_type
        assert THUMBNAILS.spec.skip_reason(content_type) is None
        assert stage_rules.thumbnails_skip_reason(content_type) is None
    assert PDF_CONTENT_TYPE == stage_rules.PDF
    assert THUMBNAILS.spec.skip_reason(stage_rules.PDF) is None
    # PostScript is a program: never handed to Ghostscript through Pillow.
    assert THUMBNAILS.spec.skip_reason("application/postscript") == (
        "no thumbnails for application/postscript"
    )


def test_text_and_unknown_types_are_skipped_with_a_reason() -> None:
    for content_type in ("text/plain", "application/zip", "application/octet-stream"):
        assert THUMBNAILS.spec.skip_reason(content_type) == f"no thumbnails for {content_type}"
        assert OCR.spec.skip_reason(content_type) == f"no OCR for {content_type}"
    assert OCR.spec.skip_reason("image/jpeg") is None
    assert OCR.spec.skip_reason("application/pdf") is None


def test_histories_from_before_plugins_keep_their_rules() -> None:
    # A TGA was skipped by rule then (no activity in its history): its replay must decide
    # the same, though the thumbnails stage takes TGA now.
    assert (
        stage_rules.legacy_thumbnails_skip_reason("image/x-tga") == "no thumbnails for image/x-tga"
    )
    assert stage_rules.legacy_thumbnails_skip_reason("image/png") is None
    assert stage_rules.legacy_ocr_skip_reason("text/plain") == "no OCR for text/plain"


def test_a_files_plan_carries_answers_and_a_reprocess_plan_carries_the_rules() -> None:
    settings = Settings()
    specs = [SCAN.spec, THUMBNAILS.spec, TEXT.spec, OCR.spec]
    for_text = plan_for(specs, "text/plain", settings, None)
    skipped = {s.name: s.skipped_reason for s in for_text.stages}
    assert skipped == {
        "scan": None,
        "thumbnails": "no thumbnails for text/plain",
        "text": None,
        "ocr": "no OCR for text/plain",
    }
    # The answer only: no spec's list of types in every file's history.
    assert all(not s.content_types and not s.label for s in for_text.stages)
    for_any = plan_for(specs, "", settings, ["thumbnails"])
    (thumbnails,) = for_any.stages
    assert thumbnails.skipped_reason is None
    for content_type in ("image/png", "application/pdf", "text/plain", "application/zip"):
        assert thumbnails.skip_reason(content_type) == THUMBNAILS.spec.skip_reason(content_type)

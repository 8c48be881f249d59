"""PDF text layers through poppler: pages, empty pages for OCR, limits, encryption."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from activities.extract import Extracted, ExtractionFailed, TextLimits, extract_text
from activities.extract.pdf import pages_without_text
from tests import extract_samples as samples

PDF = "application/pdf"


def _extract(tmp_path: Path, data: bytes, limits: TextLimits | None = None) -> Extracted:
    path = tmp_path / "doc.pdf"
    path.write_bytes(data)
    return extract_text(path, PDF, limits or TextLimits(), lambda: None, tmp_path)


def test_text_layer_page_by_page_with_empty_pages_named(tmp_path: Path) -> None:
    data = samples.make_text_pdf(
        ["Invoice number 42\nTotal (EUR) café", "", "Terms and conditions"],
        title="Invoice",
        author="Ann Author",
    )
    result = _extract(tmp_path, data)
    assert result.kind == "pdf text layer"
    assert result.pages == 3
    assert result.text.split("\n\f\n") == [
        "Invoice number 42\nTotal (EUR) café",
        "",
        "Terms and conditions",
    ]
    assert result.pages_without_text == [2]
    assert result.metadata == {"pages": 3, "title": "Invoice", "author": "Ann Author"}
    assert not result.truncated
    assert [p.name for p in tmp_path.iterdir()] == ["doc.pdf"]  # scratch files are gone


def test_no_title_no_author(tmp_path: Path) -> None:
    result = _extract(tmp_path, samples.make_text_pdf(["words"]))
    assert result.metadata == {"pages": 1}


def test_max_pages(tmp_path: Path) -> None:
    pages = [f"page {n} words" for n in range(1, 31)]
    result = _extract(tmp_path, samples.make_text_pdf(pages), TextLimits(max_pages=5))
    assert result.text.split("\n\f\n") == pages[:5]
    assert result.pages == 30
    assert result.truncated


def test_max_chars(tmp_path: Path) -> None:
    pages = [f"page {n}\n" + "lorem ipsum dolor sit amet\n" * 30 for n in range(1, 11)]
    result = _extract(tmp_path, samples.make_text_pdf(pages), TextLimits(max_chars=1000))
    assert len(result.text) == 1000
    assert result.text.startswith("page 1\nlorem ipsum dolor sit amet\n")
    assert result.truncated


def test_twenty_pages_are_quick(tmp_path: Path) -> None:
    lines = "\n".join(f"line {n} of ordinary words on the page" for n in range(40))
    data = samples.make_text_pdf([f"Page {n}\n{lines}" for n in range(1, 21)])
    started = time.monotonic()
    result = _extract(tmp_path, data)
    assert time.monotonic() - started < 5
    assert result.pages == 20
    assert result.text.split("\n\f\n")[19].startswith("Page 20\nline 0")


def test_encrypted_pdf_needs_the_password(tmp_path: Path) -> None:
    with pytest.raises(ExtractionFailed) as failed:
        _extract(tmp_path, samples.make_encrypted_pdf("secret words"))
    assert str(failed.value) == "Encrypted PDF: its text needs the password."


def test_encrypted_pdf_from_the_integration_samples(tmp_path: Path) -> None:
    from tests.integration.samples import encrypted_pdf

    with pytest.raises(ExtractionFailed, match="^Encrypted PDF: its text needs the password"):
        _extract(tmp_path, encrypted_pdf("BANK STATEMENT"))


def test_broken_pdf_fails_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(ExtractionFailed, match=r"^Not a readable PDF \(pdfinfo: .+\)\.$"):
        _extract(tmp_path, samples.make_text_pdf(["words"])[:300])


def test_pages_without_text_names_the_empty_ones_up_to_the_limit(tmp_path: Path) -> None:
    pdf = tmp_path / "mixed.pdf"
    pdf.write_bytes(samples.make_text_pdf(["", "two", "", "four", ""]))
    assert pages_without_text(pdf, 20, 30, lambda: None) == [1, 3, 5]
    assert pages_without_text(pdf, 2, 30, lambda: None) == [1]

"""The text stage's extraction against OCR, and LibreOffice's time per document.

A 20-page digital PDF (made here, Helvetica text on every page): its text read from the
text layer (pdfinfo + pdftotext, what the text stage does now) against OCR of the same
20 pages (pdftoppm at the stage's DPI + Tesseract, what the OCR stage did to every PDF
before), in the same run. Then one conversion per office format through LibreOffice
headless, each with a profile of its own (what every call does). Last, the bubblewrap
sandbox's cost: a document's PDF made with and without it, alternately, in the same run.
Medians over rounds.

    .venv/bin/python -m bench.text_extraction [--rounds 5] [--ocr-rounds 1]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from activities.extract import TextLimits, extract_text, office_to_pdf, sandbox
from activities.ocr import TESSERACT_ENV, pdf_info, render_pdf_page, tesseract
from conveyor_core.settings import get_settings
from tests import extract_samples

PAGES = 20
SENTENCE = "The warehouse shipped {n} parcels to the northern depot before the quarter ended."


def no_beat() -> None:
    pass


def digital_pdf() -> bytes:
    pages = [
        "\n".join(SENTENCE.format(n=p * 40 + line) for line in range(30)) for p in range(PAGES)
    ]
    return extract_samples.make_text_pdf(pages, title="Bench report", author="Conveyor")


def timed(run: Callable[[], object], rounds: int) -> float:
    """Median milliseconds of `rounds` runs."""
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took)


def ocr_all_pages(pdf: Path, work: Path) -> None:
    settings = get_settings()
    info = pdf_info(pdf, PAGES, 120, no_beat)
    for page in range(1, info.pages + 1):
        png = render_pdf_page(pdf, page, settings.pdf_render_dpi, work, 120, no_beat)
        tesseract(png, settings.ocr_languages, 120, no_beat, TESSERACT_ENV)
        png.unlink()


def office_documents() -> dict[str, tuple[str, bytes]]:
    words = [SENTENCE.format(n=n) for n in range(40)]
    return {
        "docx": (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            extract_samples.make_docx(words),
        ),
        "odt": ("application/vnd.oasis.opendocument.text", extract_samples.make_odt(words)),
        "xlsx": (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            extract_samples.make_xlsx({"Q3": [[w, str(n)] for n, w in enumerate(words)]}),
        ),
        "odp": (
            "application/vnd.oasis.opendocument.presentation",
            extract_samples.make_odp(words[:5]),
        ),
    }


def office_times(source: Path, content_type: str, data: bytes, rounds: int) -> dict[str, float]:
    """One document's text, and its PDF (the first step of an office preview)."""
    source.write_bytes(data)
    work = source.parent
    text_ms = timed(lambda: extract_text(source, content_type, TextLimits(), no_beat, work), rounds)
    pdf_ms = timed(lambda: office_to_pdf(source, work, 60, no_beat), rounds)
    return {"text_ms": round(text_ms, 1), "to_pdf_ms": round(pdf_ms, 1)}


def sandbox_cost(work: Path, rounds: int) -> dict[str, object]:
    """office_to_pdf of a .docx and a .doc, in the sandbox and outside it, alternately."""
    if not sandbox.available():
        return {"available": False}
    words = [SENTENCE.format(n=n) for n in range(40)]
    docx = extract_samples.make_docx(words)
    documents = {
        "docx": docx,
        "doc": extract_samples.convert_with_soffice(docx, "s.docx", "doc", work),
    }
    results: dict[str, object] = {"available": True}
    for name, data in documents.items():
        source = work / f"sandboxed.{name}"
        source.write_bytes(data)
        convert = functools.partial(office_to_pdf, source, work, 60, no_beat)
        inside, outside = [], []
        for _ in range(rounds):
            inside.append(timed(convert, 1))
            with _no_sandbox():
                outside.append(timed(convert, 1))
        in_ms, out_ms = statistics.median(inside), statistics.median(outside)
        results[name] = {
            "to_pdf_sandboxed_ms": round(in_ms, 1),
            "to_pdf_bare_ms": round(out_ms, 1),
            "sandboxed_over_bare": round(in_ms / out_ms, 2),
        }
    return results


@contextmanager
def _no_sandbox() -> Iterator[None]:
    available = sandbox.available
    sandbox.available = lambda: False  # type: ignore[assignment]
    try:
        yield
    finally:
        sandbox.available = available


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ocr-rounds", type=int, default=1)
    args = parser.parse_args()
    limits = TextLimits()
    results: dict[str, object] = {"pages": PAGES}
    with tempfile.TemporaryDirectory(prefix="bench-text-") as tmp:
        work = Path(tmp)
        pdf = work / "report.pdf"
        pdf.write_bytes(digital_pdf())
        found = extract_text(pdf, "application/pdf", limits, no_beat, work)
        assert found.pages == PAGES and not found.pages_without_text, found.pages_without_text
        layer_ms = timed(
            lambda: extract_text(pdf, "application/pdf", limits, no_beat, work), args.rounds
        )
        ocr_ms = timed(lambda: ocr_all_pages(pdf, work), args.ocr_rounds)
        results["pdf_text_layer_ms"] = round(layer_ms, 1)
        results["pdf_ocr_ms"] = round(ocr_ms, 1)
        results["ocr_over_text_layer"] = round(ocr_ms / layer_ms, 1)
        office = {
            name: office_times(work / f"document.{name}", content_type, data, args.rounds)
            for name, (content_type, data) in office_documents().items()
        }
        results["libreoffice"] = office
        results["libreoffice_sandbox"] = sandbox_cost(work, args.rounds)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

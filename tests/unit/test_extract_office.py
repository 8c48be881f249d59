"""Office documents through a real headless LibreOffice: text, sheets, slides, failures,
a timeout that kills soffice's whole process group, and documents that link to the web."""

from __future__ import annotations

import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from activities.extract import (
    Extracted,
    ExtractionFailed,
    TextLimits,
    extract_text,
    office_to_pdf,
)
from activities.extract.kinds import Family, Kind, classify, sniff
from tests import extract_samples as samples
from tests.helpers import process_alive

OOXML = "application/vnd.openxmlformats-officedocument"
ODF = "application/vnd.oasis.opendocument"
DOCX = f"{OOXML}.wordprocessingml.document"
PARAGRAPHS = ["First paragraph of the report.", "Second paragraph, café & co."]
SHEETS = {"Fruit": [["apple", "3"], ["pear", "5"]], "Veg": [["carrot"]]}
SHEETS_TEXT = "Sheet: Fruit\napple,3\npear,5\n\nSheet: Veg\ncarrot"
SLIDES = ["Slide one words", "Slide two words"]


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One document of each office format; the legacy ones (and PPTX) LibreOffice writes."""
    folder = tmp_path_factory.mktemp("office")
    odt = samples.make_odt(PARAGRAPHS)
    ods = samples.make_ods(SHEETS)
    odp = samples.make_odp(SLIDES)
    made = {
        "docx": samples.make_docx(PARAGRAPHS),
        "odt": odt,
        "rtf": samples.make_rtf(" ".join(PARAGRAPHS).replace("&", "and")),
        "xlsx": samples.make_xlsx(SHEETS),
        "ods": ods,
        "odp": odp,
        "doc": samples.convert_with_soffice(odt, "a.odt", "doc:MS Word 97", folder),
        "xls": samples.convert_with_soffice(ods, "a.ods", "xls:MS Excel 97", folder),
        "ppt": samples.convert_with_soffice(odp, "a.odp", "ppt:MS PowerPoint 97", folder),
        "pptx": samples.convert_with_soffice(
            odp, "a.odp", "pptx:Impress MS PowerPoint 2007 XML", folder
        ),
    }
    paths = {}
    for name, data in made.items():
        paths[name] = folder / f"sample.{name}"
        paths[name].write_bytes(data)
    return paths


def _extract(path: Path, work: Path, limits: TextLimits | None = None) -> Extracted:
    return extract_text(path, sniff(path), limits or TextLimits(), lambda: None, work)


@pytest.mark.parametrize(
    ("name", "sniffed", "kind"),
    [
        ("doc", "application/msword", Kind(Family.WORD_PROCESSING, "doc")),
        ("xls", "application/vnd.ms-excel", Kind(Family.SPREADSHEET, "xls")),
        ("ppt", "application/x-ole-storage", Kind(Family.PRESENTATION, "ppt")),
        ("pptx", f"{OOXML}.presentationml.presentation", Kind(Family.PRESENTATION, "pptx")),
    ],
)
def test_legacy_formats_sniff(
    documents: dict[str, Path], name: str, sniffed: str, kind: Kind
) -> None:
    assert sniff(documents[name]) == sniffed
    assert classify(documents[name], sniffed) == kind


@pytest.mark.parametrize("name", ["docx", "odt", "doc"])
def test_word_processing(documents: dict[str, Path], tmp_path: Path, name: str) -> None:
    result = _extract(documents[name], tmp_path)
    assert result.text == "\n".join(PARAGRAPHS)
    assert (result.kind, result.truncated) == ("word processing document", False)
    assert list(tmp_path.iterdir()) == []  # profile and converted text are gone


def test_rtf(documents: dict[str, Path], tmp_path: Path) -> None:
    result = _extract(documents["rtf"], tmp_path)
    assert result.text == "First paragraph of the report. Second paragraph, café and co."


@pytest.mark.parametrize("name", ["xlsx", "ods", "xls"])
def test_spreadsheets_every_sheet(documents: dict[str, Path], tmp_path: Path, name: str) -> None:
    result = _extract(documents[name], tmp_path)
    assert result.text == SHEETS_TEXT
    assert result.kind == "spreadsheet"
    assert result.metadata == {"sheets": 2}
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["pptx", "odp", "ppt"])
def test_presentations_through_pdf(documents: dict[str, Path], tmp_path: Path, name: str) -> None:
    result = _extract(documents[name], tmp_path)
    assert result.text.split("\n\f\n") == SLIDES
    assert (result.kind, result.pages) == ("presentation", 2)
    assert list(tmp_path.iterdir()) == []


def test_max_chars(tmp_path: Path) -> None:
    path = tmp_path / "long.docx"
    path.write_bytes(samples.make_docx([f"paragraph {n} with some words" for n in range(200)]))
    result = _extract(path, tmp_path, TextLimits(max_chars=100))
    assert len(result.text) == 100
    assert result.text.startswith("paragraph 0 with some words\nparagraph 1")
    assert result.truncated


def test_office_to_pdf(documents: dict[str, Path], tmp_path: Path) -> None:
    pdf = office_to_pdf(documents["docx"], tmp_path, 60, lambda: None)
    assert pdf.parent.parent == tmp_path
    assert [p.name for p in pdf.parent.iterdir()] == ["document.pdf"]
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, check=True).stdout
    assert PARAGRAPHS[0] in text.decode()


def test_office_to_pdf_refuses_what_is_not_an_office_document(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_bytes(samples.make_html("words"))
    with pytest.raises(ExtractionFailed, match=r"^Not an office document\.$"):
        office_to_pdf(path, tmp_path, 60, lambda: None)


def test_corrupt_docx(tmp_path: Path) -> None:
    whole = samples.make_docx(PARAGRAPHS)
    broken = bytearray(whole)
    at = broken.find(b"word/document.xml", broken.find(b"word/document.xml") + 1)
    broken[at - 200 : at - 100] = b"\xff" * 100  # garble a member's compressed bytes
    for name, data in [("corrupt.docx", bytes(broken)), ("truncated.docx", whole[:600])]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ExtractionFailed) as failed:
            extract_text(path, DOCX, TextLimits(), lambda: None, tmp_path)
        assert str(failed.value) == (
            "The document could not be converted: LibreOffice could not read it."
        )


def test_a_file_is_only_read_as_the_format_it_was_sniffed_as(tmp_path: Path) -> None:
    """HTML called a DOCX is not opened by LibreOffice's HTML filter (which fetches links)."""
    path = tmp_path / "page.docx"
    path.write_bytes(samples.make_html("words"))
    with pytest.raises(ExtractionFailed, match="LibreOffice could not read it"):
        extract_text(path, DOCX, TextLimits(), lambda: None, tmp_path)


def test_documents_linking_to_the_web_fetch_nothing(tmp_path: Path) -> None:
    """Converted with a default profile, both make LibreOffice 7.4 request the image."""
    with samples.recording_web_server() as (base, requests):
        docs = {
            "remote.docx": (samples.make_docx(["Remote words"], image_url=f"{base}/a.png"), DOCX),
            "remote.odt": (samples.make_odt(["Remote words"], image_url=f"{base}/b.png"), ""),
            "blackhole.docx": (
                samples.make_docx(["Remote words"], image_url="http://10.255.255.1/c.png"),
                DOCX,
            ),
        }
        for name, (data, content_type) in docs.items():
            path = tmp_path / name
            path.write_bytes(data)
            started = time.monotonic()
            result = extract_text(
                path, content_type or f"{ODF}.text", TextLimits(), lambda: None, tmp_path
            )
            pdf = office_to_pdf(path, tmp_path, 60, lambda: None)
            assert time.monotonic() - started < 20
            assert result.text == "Remote words"
            assert pdf.stat().st_size > 0
        assert requests == []


def _processes_mentioning(text: str) -> dict[int, str]:
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if text.encode() in (proc / "cmdline").read_bytes():
                found[int(proc.name)] = (proc / "comm").read_text().strip()
        except OSError:
            continue
    return found


def test_timeout_kills_the_whole_soffice_group(documents: dict[str, Path], tmp_path: Path) -> None:
    seen: dict[int, str] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(_processes_mentioning(str(tmp_path)))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    try:
        with pytest.raises(ExtractionFailed) as failed:
            extract_text(
                documents["docx"], DOCX, TextLimits(timeout_seconds=0.6), lambda: None, tmp_path
            )
    finally:
        done.set()
        watcher.join()
    assert str(failed.value) == (
        "The document could not be converted: LibreOffice gave up after 0.6 s."
    )
    assert time.monotonic() - started < 5
    assert "soffice.bin" in seen.values()  # soffice had forked its worker when it was killed
    deadline = time.monotonic() + 3
    while any(process_alive(pid) for pid in seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in seen if process_alive(pid)] == []
    assert list(tmp_path.iterdir()) == []


def test_conversions_at_once_do_not_collide(documents: dict[str, Path], tmp_path: Path) -> None:
    names = ["docx", "odt", "xlsx", "ods"]
    with ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(lambda n: _extract(documents[n], tmp_path), names))
    assert [r.text for r in results] == ["\n".join(PARAGRAPHS)] * 2 + [SHEETS_TEXT] * 2

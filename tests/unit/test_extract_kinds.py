"""The type libmagic sniffs from a file's first 64 KiB picks its extractor."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from activities.extract.kinds import Family, Kind, classify, sniff
from tests import extract_samples as samples

OOXML = "application/vnd.openxmlformats-officedocument"
ODF = "application/vnd.oasis.opendocument"


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "data", "sniffed", "kind"),
    [
        ("utf8.txt", "héllo wörld\n".encode(), "text/plain", Kind(Family.TEXT)),
        ("latin1.txt", "héllo wörld\n".encode("latin-1"), "text/plain", Kind(Family.TEXT)),
        ("utf16.txt", "héllo wörld\n".encode("utf-16"), "text/plain", Kind(Family.TEXT)),
        ("a.csv", b"a,b\n1,2\n", "text/plain", Kind(Family.TEXT)),
        ("a.html", samples.make_html("words"), "text/html", Kind(Family.HTML)),
        ("a.eml", samples.make_eml(), "message/rfc822", Kind(Family.EMAIL)),
        ("a.pdf", samples.make_text_pdf(["words"]), "application/pdf", Kind(Family.PDF)),
        (
            "a.docx",
            samples.make_docx(["words"]),
            f"{OOXML}.wordprocessingml.document",
            Kind(Family.WORD_PROCESSING, "docx"),
        ),
        (
            "a.xlsx",
            samples.make_xlsx({"S": [["words"]]}),
            f"{OOXML}.spreadsheetml.sheet",
            Kind(Family.SPREADSHEET, "xlsx"),
        ),
        ("a.odt", samples.make_odt(["w"]), f"{ODF}.text", Kind(Family.WORD_PROCESSING, "odt")),
        (
            "a.ods",
            samples.make_ods({"S": [["w"]]}),
            f"{ODF}.spreadsheet",
            Kind(Family.SPREADSHEET, "ods"),
        ),
        (
            "a.odp",
            samples.make_odp(["w"]),
            f"{ODF}.presentation",
            Kind(Family.PRESENTATION, "odp"),
        ),
        ("a.rtf", samples.make_rtf("words"), "text/rtf", Kind(Family.WORD_PROCESSING, "rtf")),
        ("a.zip", samples.make_zip({"a.txt": b"a"}), "application/zip", Kind(Family.ZIP)),
        ("a.tar", samples.make_tar({"a.txt": b"a"}), "application/x-tar", Kind(Family.TAR)),
        (
            "a.tgz",
            samples.make_tar({"a.txt": b"a"}, "w:gz"),
            "application/gzip",
            Kind(Family.COMPRESSED),
        ),
    ],
)
def test_sniffed_type_and_family(
    tmp_path: Path, name: str, data: bytes, sniffed: str, kind: Kind
) -> None:
    path = _write(tmp_path, name, data)
    assert sniff(path) == sniffed
    assert classify(path, sniffed) == kind


def test_odf_whose_mimetype_is_deflated_sniffs_as_octet_stream_and_is_still_read(
    tmp_path: Path,
) -> None:
    source = zipfile.ZipFile(_write(tmp_path, "a.ods", samples.make_ods({"S": [["w"]]})))
    deflated = tmp_path / "deflated.ods"
    with zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as out:
        for name in source.namelist():
            out.writestr(name, source.read(name))
    assert sniff(deflated) == "application/octet-stream"
    assert classify(deflated, "application/octet-stream") == Kind(Family.SPREADSHEET, "ods")


def test_zip_with_office_parts_is_the_office_document(tmp_path: Path) -> None:
    """A DOCX whose first 64 KiB libmagic cannot place is told by its members."""
    path = _write(tmp_path, "a.docx", samples.make_docx(["words"]))
    assert classify(path, "application/zip") == Kind(Family.WORD_PROCESSING, "docx")
    path = _write(tmp_path, "a.xlsx", samples.make_xlsx({"S": [["w"]]}))
    assert classify(path, "application/zip") == Kind(Family.SPREADSHEET, "xlsx")
    path = _write(tmp_path, "a.odp", samples.make_odp(["w"]))
    assert classify(path, "application/zip") == Kind(Family.PRESENTATION, "odp")


def test_docx_libmagic_calls_a_zip_is_a_docx(tmp_path: Path) -> None:
    """With a big thumbnail first, the parts libmagic looks for are past the first 64 KiB."""
    source = zipfile.ZipFile(_write(tmp_path, "a.docx", samples.make_docx(["words"])))
    path = tmp_path / "thumbnail-first.docx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        out.writestr("docProps/thumbnail.jpeg", bytes(range(256)) * 400)
        for name in source.namelist():
            out.writestr(name, source.read(name))
    assert sniff(path) == "application/zip"
    assert classify(path, "application/zip") == Kind(Family.WORD_PROCESSING, "docx")


def test_a_plain_zip_and_a_broken_one_are_zips(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.zip", samples.make_zip({"word/x.txt": b"not a docx"}))
    assert classify(path, "application/zip") == Kind(Family.ZIP)
    path = _write(tmp_path, "b.zip", samples.make_zip({"a": b"a"})[:40])
    assert classify(path, "application/zip") == Kind(Family.ZIP)


def test_e_mail_sniffed_as_text_is_an_e_mail(tmp_path: Path) -> None:
    eml = b"MIME-Version: 1.0\nMessage-ID: <1@x>\nFrom: a@x.org\nSubject: hi\n\nbody\n"
    path = _write(tmp_path, "a.eml", eml)
    assert sniff(path) == "text/plain"
    assert classify(path, "text/plain") == Kind(Family.EMAIL)
    notes = _write(tmp_path, "notes.txt", b"From: the desk of Ann\nTo do: call Bob\n")
    assert classify(notes, "text/plain") == Kind(Family.TEXT)  # no blank line, no e-mail


@pytest.mark.parametrize(
    "content_type", ["image/png", "application/octet-stream", "video/mp4", "application/x-empty"]
)
def test_no_extractor(tmp_path: Path, content_type: str) -> None:
    path = _write(tmp_path, "x.bin", b"\x00\x01\x02 binary")
    assert classify(path, content_type) is None

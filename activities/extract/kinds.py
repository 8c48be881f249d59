"""Which extractor reads a file, from the type libmagic sniffed in its first 64 KiB.

libmagic 5.44 (Debian 12), `magic.from_buffer(first 64 KiB, mime=True)`, on real files:

| file                                  | sniffed type                                          |
|---------------------------------------|-------------------------------------------------------|
| .txt utf-8 / latin-1 / utf-16 (BOM)   | text/plain                                            |
| .txt utf-16 without BOM, text with NUL| application/octet-stream (no extractor)               |
| .csv, .tsv, .md, .py                  | text/plain                                            |
| .xml, .fodt (flat ODF)                | text/xml                                              |
| .json                                 | application/json                                      |
| .html with <html> or doctype          | text/html (a bare fragment <div>..: text/plain)       |
| .eml starting From/To/Subject/Date/   | message/rfc822                                        |
|   Received/Return-Path/Delivered-To   |                                                       |
| .eml starting MIME-Version/Message-ID/| text/plain (recognised here by its header block)      |
|   X-...                               |                                                       |
| .docx                                 | application/vnd.openxmlformats-officedocument.        |
|                                       |   wordprocessingml.document                           |
| .xlsx                                 | ...spreadsheetml.sheet                                |
| .pptx                                 | ...presentationml.presentation                        |
| .odt / .ods / .odp                    | application/vnd.oasis.opendocument.text /             |
|                                       |   .spreadsheet / .presentation                        |
| .odt made from HTML by LibreOffice    | application/vnd.oasis.opendocument.text-web           |
| .docx whose first member is a 100 KB  | application/zip (members decide)                      |
|   docProps/thumbnail.jpeg, customXml/ |                                                       |
| ODF whose mimetype member is deflated | application/octet-stream (a zip: members decide)      |
| ODF without a mimetype member         | application/zip (read as a zip: listed)               |
| .doc                                  | application/msword                                    |
| .xls                                  | application/vnd.ms-excel                              |
| .ppt                                  | application/x-ole-storage (OLE streams decide)        |
| .rtf                                  | text/rtf                                              |
| .zip                                  | application/zip                                       |
| .tar                                  | application/x-tar                                     |
| .tar.gz / .tar.bz2 / .tar.xz          | application/gzip / application/x-bzip2 /              |
|                                       |   application/x-xz (a tar inside decides)             |
| PDF                                   | application/pdf                                       |

So a zip is looked into (OOXML: `word/`, `xl/`, `ppt/` parts; ODF: its `mimetype` member)
and an OLE compound file by its stream names (WordDocument, Workbook/Book, PowerPoint
Document) before it is called a zip or given up on.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

import magic

from activities.extract import archives

SNIFFED_BYTES = 64 * 1024


class Family(enum.Enum):
    PDF = "pdf"
    TEXT = "text"
    HTML = "html"
    EMAIL = "email"
    WORD_PROCESSING = "word processing document"
    SPREADSHEET = "spreadsheet"
    PRESENTATION = "presentation"
    ZIP = "zip"
    TAR = "tar"
    COMPRESSED = "compressed"  # gzip/bzip2/xz: a tar inside, or nothing we read


@dataclass(frozen=True)
class Kind:
    family: Family
    office_format: str | None = None  # for LibreOffice: "docx", "odt", "doc", ...


OOXML = "application/vnd.openxmlformats-officedocument"
ODF = "application/vnd.oasis.opendocument"

# Office formats: sniffed type -> (family, format). The format picks LibreOffice's import
# filter, so a file is only ever opened as what it was sniffed as.
OFFICE_TYPES: dict[str, Kind] = {
    f"{OOXML}.wordprocessingml.document": Kind(Family.WORD_PROCESSING, "docx"),
    f"{OOXML}.wordprocessingml.template": Kind(Family.WORD_PROCESSING, "docx"),
    "application/vnd.ms-word.document.macroenabled.12": Kind(Family.WORD_PROCESSING, "docx"),
    "application/vnd.ms-word.template.macroenabled.12": Kind(Family.WORD_PROCESSING, "docx"),
    f"{ODF}.text": Kind(Family.WORD_PROCESSING, "odt"),
    f"{ODF}.text-template": Kind(Family.WORD_PROCESSING, "odt"),
    f"{ODF}.text-web": Kind(Family.WORD_PROCESSING, "odt"),
    f"{ODF}.text-master": Kind(Family.WORD_PROCESSING, "odt"),
    "application/msword": Kind(Family.WORD_PROCESSING, "doc"),
    "text/rtf": Kind(Family.WORD_PROCESSING, "rtf"),
    "application/rtf": Kind(Family.WORD_PROCESSING, "rtf"),
    f"{OOXML}.spreadsheetml.sheet": Kind(Family.SPREADSHEET, "xlsx"),
    f"{OOXML}.spreadsheetml.template": Kind(Family.SPREADSHEET, "xlsx"),
    "application/vnd.ms-excel.sheet.macroenabled.12": Kind(Family.SPREADSHEET, "xlsx"),
    f"{ODF}.spreadsheet": Kind(Family.SPREADSHEET, "ods"),
    f"{ODF}.spreadsheet-template": Kind(Family.SPREADSHEET, "ods"),
    "application/vnd.ms-excel": Kind(Family.SPREADSHEET, "xls"),
    f"{OOXML}.presentationml.presentation": Kind(Family.PRESENTATION, "pptx"),
    f"{OOXML}.presentationml.slideshow": Kind(Family.PRESENTATION, "pptx"),
    f"{OOXML}.presentationml.template": Kind(Family.PRESENTATION, "pptx"),
    "application/vnd.ms-powerpoint.presentation.macroenabled.12": Kind(Family.PRESENTATION, "pptx"),
    f"{ODF}.presentation": Kind(Family.PRESENTATION, "odp"),
    f"{ODF}.presentation-template": Kind(Family.PRESENTATION, "odp"),
    "application/vnd.ms-powerpoint": Kind(Family.PRESENTATION, "ppt"),
}

# Types libmagic gives an OLE compound file whose application it could not tell.
OLE_TYPES = {"application/x-ole-storage", "application/CDFV2", "application/vnd.ms-office"}
ZIP_TYPES = {"application/zip", "application/x-zip-compressed"}
TAR_TYPES = {"application/x-tar", "application/x-gtar", "application/x-ustar"}
COMPRESSED_TYPES = {
    "application/gzip",
    "application/x-gzip",
    "application/x-bzip2",
    "application/x-xz",
}
# Non-text/* types that are text all the same.
TEXT_APPLICATION_TYPES = {
    "application/json",
    "application/xml",
    "application/x-ndjson",
    "application/javascript",
    "application/csv",
    "application/x-subrip",
}
NOT_PLAIN_TEXT = {"text/html", "text/rtf"}

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def classify(path: Path, content_type: str) -> Kind | None:
    """The extractor family for a file sniffed as `content_type`; None: no extractor."""
    content_type = content_type.split(";")[0].strip()
    lowered = content_type.lower()
    if lowered == "application/pdf":
        return Kind(Family.PDF)
    office = OFFICE_TYPES.get(lowered) or OFFICE_TYPES.get(content_type)
    if office is not None:
        return office
    if lowered == "message/rfc822":
        return Kind(Family.EMAIL)
    if lowered in ("text/html", "application/xhtml+xml"):
        return Kind(Family.HTML)
    if lowered.startswith("text/") or lowered in TEXT_APPLICATION_TYPES:
        return Kind(Family.EMAIL) if looks_like_email(path) else Kind(Family.TEXT)
    if lowered in TAR_TYPES:
        return Kind(Family.TAR)
    if lowered in COMPRESSED_TYPES:
        return Kind(Family.COMPRESSED)
    if lowered in ZIP_TYPES:
        return zip_kind(path)
    if content_type in OLE_TYPES or lowered in {t.lower() for t in OLE_TYPES}:
        return ole_kind(path)
    if lowered == "application/octet-stream":
        head = _head(path, 8)
        if head.startswith(ZIP_MAGICS):
            return zip_kind(path)
        if head.startswith(OLE_MAGIC):
            return ole_kind(path)
    return None


def sniff(path: Path) -> str:
    """The type libmagic gives the file's first 64 KiB, as the verify stage sniffs it."""
    head = _head(path, SNIFFED_BYTES)
    return str(magic.from_buffer(head, mime=True)) if head else "application/x-empty"


def _head(path: Path, size: int) -> bytes:
    with path.open("rb") as f:
        return f.read(size)


# ---------------------------------------------------------------- zip: OOXML, ODF or a zip

# Names scanned for telling an office document from a zip (they come first in both).
ZIP_NAMES_LOOKED_AT = 2_000
_OOXML_PARTS = {
    "word/": Kind(Family.WORD_PROCESSING, "docx"),
    "xl/": Kind(Family.SPREADSHEET, "xlsx"),
    "ppt/": Kind(Family.PRESENTATION, "pptx"),
}


def zip_kind(path: Path) -> Kind:
    """An office document if the zip's members say so, else a zip (listed, or refused later)."""
    try:
        entries = archives.zip_entries(path, ZIP_NAMES_LOOKED_AT).entries
    except archives.BadArchive:
        return Kind(Family.ZIP)
    names = {entry.name for entry in entries}
    if "[Content_Types].xml" in names:
        for prefix, kind in _OOXML_PARTS.items():
            if any(name.startswith(prefix) for name in names):
                return kind
    mimetype = next((e for e in entries if e.name == "mimetype"), None)
    if mimetype is not None and mimetype.size <= 200:
        try:
            declared = archives.read_small_member(path, mimetype).decode("ascii").strip()
        except (archives.BadArchive, UnicodeDecodeError):
            declared = ""
        office = OFFICE_TYPES.get(declared.lower())
        if office is not None:
            return office
    return Kind(Family.ZIP)


# ---------------------------------------------------------------- OLE compound files

_OLE_STREAMS = {
    "WordDocument": Kind(Family.WORD_PROCESSING, "doc"),
    "Workbook": Kind(Family.SPREADSHEET, "xls"),
    "Book": Kind(Family.SPREADSHEET, "xls"),
    "PowerPoint Document": Kind(Family.PRESENTATION, "ppt"),
}
_OLE_ENTRY = 128  # directory entries are 128 bytes, aligned so in every sector size
_OLE_CHUNK = 1024 * 1024


def ole_kind(path: Path) -> Kind | None:
    """Word, Excel or PowerPoint, by the stream its directory names; None for other OLE files.

    Rather than follow the sector chains, this looks for a directory entry for each stream
    name (UTF-16 name, its length, type 2 = stream) at the 128-byte boundaries where
    directory entries sit.
    """
    patterns = {name.encode("utf-16-le") + b"\0\0": kind for name, kind in _OLE_STREAMS.items()}
    with path.open("rb") as f:
        if f.read(8) != OLE_MAGIC:
            return None
        offset = 0
        f.seek(0)
        while chunk := f.read(_OLE_CHUNK):
            for pattern, kind in patterns.items():
                at = chunk.find(pattern)
                while at != -1:
                    if (offset + at) % _OLE_ENTRY == 0 and _is_stream_entry(chunk, at, pattern):
                        return kind
                    at = chunk.find(pattern, at + 1)
            offset += len(chunk)
    return None


def _is_stream_entry(chunk: bytes, at: int, name: bytes) -> bool:
    entry = chunk[at : at + 0x43]
    return (
        len(entry) == 0x43
        and int.from_bytes(entry[0x40:0x42], "little") == len(name)
        and (entry[0x42] == 2)
    )


# ---------------------------------------------------------------- e-mail sniffed as text

_HEADER_LINE = re.compile(rb"^[!-9;-~]+:[ \t]?[^\r\n]*$|^[ \t]+\S")
_EMAIL_HEADERS = {b"to", b"subject", b"date", b"message-id", b"cc", b"received"}


def looks_like_email(path: Path) -> bool:
    """A text file whose head is an RFC 5322 header block with From and one more address or
    message header (libmagic calls an e-mail text/plain when it starts with other headers)."""
    head = _head(path, 16 * 1024)
    names: set[bytes] = set()
    for line in head.replace(b"\r\n", b"\n").split(b"\n"):
        if not line:
            break
        if not _HEADER_LINE.match(line):
            return False
        if not line[:1].isspace():
            names.add(line.split(b":", 1)[0].lower())
    else:
        return False  # no blank line ended the header block within the head
    return b"from" in names and bool(names & _EMAIL_HEADERS)

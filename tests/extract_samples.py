"""Small documents for the text-extraction tests, made by the tests themselves.

Every maker writes real bytes of its format: PDFs with a real text layer (Helvetica text
objects), hand-written OOXML and ODF zips, an e-mail with an HTML part and an attachment,
archives. The legacy binary formats (and PPTX) are converted from ODF by LibreOffice,
`convert_with_soffice`, in a throwaway profile. Integration tests reuse these makers.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import subprocess
import tarfile
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from xml.sax.saxutils import escape

# ---------------------------------------------------------------- PDF


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252", "replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def make_text_pdf(pages: list[str], *, title: str = "", author: str = "") -> bytes:
    """A digital PDF, one page per item of `pages` (lines split on newlines), in Helvetica.

    An empty item makes a page with no text at all (a scanned page's text layer looks so).
    """
    objects: list[bytes] = []  # object n is objects[n - 1]
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = b" ".join(b"%d 0 R" % n for n in page_ids)
    objects.append(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages)))
    objects.append(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )
    for page_id, words in zip(page_ids, pages, strict=True):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1)
        )
        if words:
            shown = b" Tj T* ".join(_pdf_string(line) for line in words.splitlines())
            stream = b"BT /F1 12 Tf 16 TL 72 720 Td " + shown + b" Tj ET"
        else:
            stream = b""
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream) + 1, stream))
    info_id = len(objects) + 1
    objects.append(b"<< /Title %s /Author %s >>" % (_pdf_string(title), _pdf_string(author)))

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\n" % (len(objects) + 1, info_id)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def make_encrypted_pdf(words: str, password: str = "secret") -> bytes:
    """A PDF that opens only with `password` (the user password)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_text_pdf([words]))))
    writer.encrypt(password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# ---------------------------------------------------------------- OOXML

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    "{overrides}</Types>"
)
_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def _override(part: str, content_type: str) -> str:
    return f'<Override PartName="/{part}" ContentType="{content_type}"/>'


def _relationships(*rels: tuple[str, str, str, bool]) -> str:
    body = "".join(
        f'<Relationship Id="{rid}" Type="{_RELS}/{kind}" Target="{escape(target)}"'
        + (' TargetMode="External"' if external else "")
        + "/>"
        for rid, kind, target, external in rels
    )
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<Relationships xmlns="{_PACKAGE_RELS}">{body}</Relationships>'
    )


def _zip(members: list[tuple[str, str | bytes]], *, stored_first: bool = False) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, (name, data) in enumerate(members):
            method = zipfile.ZIP_STORED if stored_first and index == 0 else zipfile.ZIP_DEFLATED
            archive.writestr(name, data, compress_type=method)
    return out.getvalue()


def _external_picture(rid: str) -> str:
    """A DrawingML picture whose bytes are at an external address (`r:link`)."""
    return (
        '<w:r><w:drawing><wp:inline><wp:extent cx="952500" cy="952500"/>'
        '<wp:docPr id="1" name="Picture 1"/>'
        '<a:graphic><a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/picture">'
        '<pic:pic><pic:nvPicPr><pic:cNvPr id="1" name="remote.png"/><pic:cNvPicPr/></pic:nvPicPr>'
        f'<pic:blipFill><a:blip r:link="{rid}"/><a:stretch><a:fillRect/></a:stretch></pic:blipFill>'
        '<pic:spPr><a:xfrm><a:off x="0" y="0"/><a:ext cx="952500" cy="952500"/></a:xfrm>'
        '<a:prstGeom prst="rect"><a:avLst/></a:prstGeom></pic:spPr>'
        "</pic:pic></a:graphicData></a:graphic></wp:inline></w:drawing></w:r>"
    )


def make_docx(paragraphs: list[str], *, image_url: str | None = None) -> bytes:
    """A minimal hand-written DOCX; with `image_url`, a picture linked (not embedded) there."""
    body = "".join(f"<w:p><w:r><w:t>{escape(text)}</w:t></w:r></w:p>" for text in paragraphs)
    rels = []
    if image_url is not None:
        body += f"<w:p>{_external_picture('rIdRemote')}</w:p>"
        rels.append(("rIdRemote", "image", image_url, True))
    document = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<w:document xmlns:w="{_W}" xmlns:r="{_RELS}" '
        'xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing" '
        'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
        'xmlns:pic="http://schemas.openxmlformats.org/drawingml/2006/picture">'
        f"<w:body>{body}</w:body></w:document>"
    )
    main = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
    return _zip(
        [
            (
                "[Content_Types].xml",
                _CONTENT_TYPES.format(overrides=_override("word/document.xml", main)),
            ),
            ("_rels/.rels", _relationships(("rId1", "officeDocument", "word/document.xml", False))),
            ("word/_rels/document.xml.rels", _relationships(*rels)),
            ("word/document.xml", document),
        ]
    )


def make_xlsx(sheets: dict[str, list[list[str]]]) -> bytes:
    """A minimal hand-written XLSX with inline strings, one sheet per item."""
    overrides = _override(
        "xl/workbook.xml",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
    )
    members: list[tuple[str, str | bytes]] = []
    entries = []
    rels = []
    for number, (name, rows) in enumerate(sheets.items(), start=1):
        part = f"worksheets/sheet{number}.xml"
        overrides += _override(
            f"xl/{part}",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml",
        )
        entries.append(f'<sheet name="{escape(name)}" sheetId="{number}" r:id="rId{number}"/>')
        rels.append((f"rId{number}", "worksheet", part, False))
        xml_rows = "".join(
            f'<row r="{r}">'
            + "".join(
                f'<c r="{chr(65 + c)}{r}" t="inlineStr"><is><t>{escape(value)}</t></is></c>'
                for c, value in enumerate(row)
            )
            + "</row>"
            for r, row in enumerate(rows, start=1)
        )
        members.append(
            (
                f"xl/{part}",
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                f"<sheetData>{xml_rows}</sheetData></worksheet>",
            )
        )
    workbook = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        f'xmlns:r="{_RELS}"><sheets>{"".join(entries)}</sheets></workbook>'
    )
    return _zip(
        [
            ("[Content_Types].xml", _CONTENT_TYPES.format(overrides=overrides)),
            ("_rels/.rels", _relationships(("rId1", "officeDocument", "xl/workbook.xml", False))),
            ("xl/workbook.xml", workbook),
            ("xl/_rels/workbook.xml.rels", _relationships(*rels)),
            *members,
        ]
    )


# ---------------------------------------------------------------- ODF

_ODF_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
    'xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0" '
    'xmlns:xlink="http://www.w3.org/1999/xlink"'
)
ODF = "application/vnd.oasis.opendocument"


def _odf(kind: str, body: str, *, flat: bool = False) -> bytes:
    """An ODF package (or, `flat`, a single-XML .fod* file) of `kind` with `body` inside."""
    mimetype = f"{ODF}.{kind}"
    element = {"text": "text", "spreadsheet": "spreadsheet", "presentation": "presentation"}[kind]
    inner = f"<office:body><office:{element}>{body}</office:{element}></office:body>"
    if flat:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<office:document {_ODF_NS} office:version="1.2" office:mimetype="{mimetype}">'
            f"{inner}</office:document>"
        ).encode()
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<office:document-content {_ODF_NS} office:version="1.2">{inner}</office:document-content>'
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" '
        'manifest:version="1.2">'
        f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{mimetype}"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    return _zip(
        [("mimetype", mimetype), ("META-INF/manifest.xml", manifest), ("content.xml", content)],
        stored_first=True,
    )


def make_odt(paragraphs: list[str], *, image_url: str | None = None) -> bytes:
    body = "".join(f"<text:p>{escape(text)}</text:p>" for text in paragraphs)
    if image_url is not None:
        body += (
            '<text:p><draw:frame draw:name="remote" svg:width="2cm" svg:height="2cm">'
            f'<draw:image xlink:href="{escape(image_url)}" xlink:type="simple" '
            'xlink:show="embed" xlink:actuate="onLoad"/></draw:frame></text:p>'
        )
    return _odf("text", body)


def _ods_body(sheets: dict[str, list[list[str]]]) -> str:
    return "".join(
        f'<table:table table:name="{escape(name)}">'
        + "".join(
            "<table:table-row>"
            + "".join(
                f'<table:table-cell office:value-type="string"><text:p>{escape(v)}</text:p>'
                "</table:table-cell>"
                for v in row
            )
            + "</table:table-row>"
            for row in rows
        )
        + "</table:table>"
        for name, rows in sheets.items()
    )


def make_ods(sheets: dict[str, list[list[str]]], *, flat: bool = False) -> bytes:
    return _odf("spreadsheet", _ods_body(sheets), flat=flat)


def make_odp(slides: list[str], *, flat: bool = False) -> bytes:
    body = "".join(
        f'<draw:page draw:name="page{n}">'
        '<draw:frame svg:x="2cm" svg:y="2cm" svg:width="22cm" svg:height="4cm">'
        f"<draw:text-box><text:p>{escape(words)}</text:p></draw:text-box></draw:frame></draw:page>"
        for n, words in enumerate(slides, start=1)
    )
    return _odf("presentation", body, flat=flat)


def make_odt_flat(paragraphs: list[str]) -> bytes:
    return _odf("text", "".join(f"<text:p>{escape(p)}</text:p>" for p in paragraphs), flat=True)


# ---------------------------------------------------------------- other formats


def _rtf_escape(char: str) -> str:
    if char in "\\{}":
        return "\\" + char
    if ord(char) < 128:
        return char
    code = ord(char)
    return f"\\u{code if code < 32768 else code - 65536}?"  # (BMP characters only)


def make_rtf(words: str) -> bytes:
    escaped = "".join(_rtf_escape(char) for char in words)
    return (
        "{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0\\fswiss Helvetica;}}\\f0\\pard " + escaped + "\\par}"
    ).encode("ascii")


def convert_with_soffice(source: bytes, source_name: str, target: str, work: Path) -> bytes:
    """Converts `source` with LibreOffice (e.g. target "docx", "xls", "ppt") in a fresh profile."""
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        folder = Path(scratch)
        (folder / source_name).write_bytes(source)
        subprocess.run(
            [
                "soffice",
                "--headless",
                "--norestore",
                "--nolockcheck",
                f"-env:UserInstallation={(folder / 'profile').as_uri()}",
                "--convert-to",
                target,
                "--outdir",
                str(folder / "out"),
                str(folder / source_name),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        [result] = (folder / "out").iterdir()
        return result.read_bytes()


def make_html(words: str) -> bytes:
    return (
        "<!DOCTYPE html><html><head><title>Page title</title>"
        "<style>p { color: red } .secret-style {}</style>"
        "<script>var secretScript = '<p>not text</p>';</script></head>"
        f"<body><!-- a hidden comment --><h1>Heading</h1><p>{escape(words)} &amp; caf&eacute;"
        "</p><template><p>template text</p></template>"
        "<ul><li>first item</li><li>second item</li></ul>"
        "<script>document.write('scripted')</script></body></html>"
    ).encode()


def make_eml(*, nested: bool = False) -> bytes:
    """An e-mail: plain and HTML alternatives, a PDF attachment, optionally a forwarded e-mail."""
    message = EmailMessage()
    message["From"] = "Alice Example <alice@example.com>"
    message["To"] = "Bob <bob@example.com>"
    message["Cc"] = "Carol <carol@example.com>"
    message["Subject"] = "Quarterly report é"
    message["Date"] = "Mon, 01 Jan 2024 10:00:00 +0000"
    message.set_content("Plain words for Bob.\n")
    message.add_alternative(
        "<html><body><p>Rich <b>words</b> for Bob</p><script>evil()</script></body></html>",
        subtype="html",
    )
    message.add_attachment(
        make_text_pdf(["attached"]), maintype="application", subtype="pdf", filename="report.pdf"
    )
    message.add_attachment(b"\x89PNG\r\n", maintype="image", subtype="png", filename="chart.png")
    if nested:
        inner = EmailMessage()
        inner["From"] = "Dave <dave@example.com>"
        inner["Subject"] = "Original question"
        inner.set_content("Nested words from Dave.\n")
        message.add_attachment(inner)
    return message.as_bytes()


def make_zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def make_tar(members: dict[str, bytes], mode: str = "w") -> bytes:
    """A tar archive; `mode` "w:gz", "w:bz2" or "w:xz" compresses it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as archive:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


@contextlib.contextmanager
def recording_web_server() -> Iterator[tuple[str, list[str]]]:
    """A local web server that answers 404 to everything and records what was asked:
    (base URL, requested paths). Hostile documents point their links here."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _record(self) -> None:
            requests.append(f"{self.command} {self.path}")
            self.send_response(404)
            self.end_headers()

        do_GET = do_HEAD = do_POST = do_OPTIONS = do_PROPFIND = _record

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()

"""Office documents through LibreOffice (headless soffice), one fresh profile per call.

Each conversion gets its own user profile (so calls running at once never share one),
the import filter of the format the file was sniffed as (a file is never opened as
something else, HTML in particular), a timeout that kills soffice's whole process group,
and a profile that keeps LibreOffice off the network and away from macros:

- every URL (http, https, ftp) goes through a proxy at 127.0.0.1:9, the discard port where
  nothing listens; measured with strace on LibreOffice 7.4: with it, a DOCX, ODT or HTML
  linking an image at a web address makes no network connection at all (without it, DOCX
  and ODT fetch the image when converted, and HTML fetches images and style sheets);
- untrusted referer links are blocked, links are never updated on load (Writer and Calc),
  formulas are never recalculated on load (the cached values are read), macros never run.

Where the worker can make one, soffice runs in a sandbox (activities/extract/sandbox.py) that
shows it the document and its scratch folder only: a picture the document links by path
(which LibreOffice draws whatever the profile says) is then not found.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from activities.extract import pdf, plain, sandbox
from activities.extract.commands import CommandFailed, CommandTimedOut, run_command
from activities.extract.kinds import Family, Kind, classify, sniff
from activities.extract.types import Beat, Extracted, ExtractionFailed, TextLimits

SOFFICE = "soffice"
# The import filter for each format (`soffice --infilter`), so a file is read only as that.
IMPORT_FILTERS = {
    "docx": "MS Word 2007 XML",
    "odt": "writer8",
    "doc": "MS Word 97",
    "rtf": "Rich Text Format",
    "xlsx": "Calc Office Open XML",
    "ods": "calc8",
    "xls": "MS Excel 97",
    "pptx": "Impress MS PowerPoint 2007 XML",
    "odp": "impress8",
    "ppt": "MS PowerPoint 97",
}
TEXT_EXPORT = "txt:Text (encoded):UTF8"
# Comma-separated, double-quoted, UTF-8, cells as shown, every sheet to its own file
# (<name>-<sheet>.csv; LibreOffice 7.2 and later).
CSV_EXPORT = "csv:Text - txt - csv (StarCalc):44,34,UTF8,1,,0,false,true,true,false,false,-1"
NO_SANDBOX = (
    "LibreOffice draws this format only in a sandbox (bubblewrap), which this worker cannot make"
)
_WRITING_SHEET = re.compile(r"^Writing sheet (.+) -> (.+)$", re.MULTILINE)

_SETTINGS = {
    ("org.openoffice.Inet/Settings", "ooInetProxyType"): "1",
    ("org.openoffice.Inet/Settings", "ooInetHTTPProxyName"): "127.0.0.1",
    ("org.openoffice.Inet/Settings", "ooInetHTTPProxyPort"): "9",
    ("org.openoffice.Inet/Settings", "ooInetHTTPSProxyName"): "127.0.0.1",
    ("org.openoffice.Inet/Settings", "ooInetHTTPSProxyPort"): "9",
    ("org.openoffice.Inet/Settings", "ooInetFTPProxyName"): "127.0.0.1",
    ("org.openoffice.Inet/Settings", "ooInetFTPProxyPort"): "9",
    ("org.openoffice.Inet/Settings", "ooInetNoProxy"): "",
    ("org.openoffice.Office.Common/Security/Scripting", "BlockUntrustedRefererLinks"): "true",
    ("org.openoffice.Office.Common/Security/Scripting", "DisableMacrosExecution"): "true",
    ("org.openoffice.Office.Common/Security/Scripting", "MacroSecurityLevel"): "3",
    ("org.openoffice.Office.Writer/Content/Update", "Link"): "0",  # never
    ("org.openoffice.Office.Calc/Content/Update", "Link"): "1",  # never
    ("org.openoffice.Office.Calc/Formula/Load", "OOXMLRecalcMode"): "1",  # never
    ("org.openoffice.Office.Calc/Formula/Load", "ODFRecalcMode"): "1",  # never
}


def _write_profile(profile: Path) -> None:
    items = "\n".join(
        f'<item oor:path="/{path}"><prop oor:name="{name}" oor:op="fuse">'
        f"<value>{value}</value></prop></item>"
        for (path, name), value in _SETTINGS.items()
    )
    (profile / "user").mkdir(parents=True)
    (profile / "user" / "registrymodifications.xcu").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<oor:items xmlns:oor="http://openoffice.org/2001/registry" '
        'xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        f"{items}\n</oor:items>\n"
    )


def _convert(
    path: Path,
    office_format: str,
    export: str,
    scratch: Path,
    timeout: float,
    beat: Beat,
    *,
    sandbox_only: bool = False,
) -> tuple[Path, str]:
    """Converts `path` into scratch/out; returns that folder and what soffice printed.

    `sandbox_only`: refuse (ExtractionFailed) rather than run soffice outside the sandbox."""
    in_sandbox = sandbox.available()
    if sandbox_only and not in_sandbox:
        raise ExtractionFailed(NO_SANDBOX)
    profile = scratch / "profile"
    _write_profile(profile)
    source = scratch / "in" / f"document.{office_format}"
    source.parent.mkdir()
    source.symlink_to(path.resolve())
    out = scratch / "out"
    args = [
        SOFFICE,
        "--headless",
        "--norestore",
        "--nolockcheck",
        "--nodefault",
        f"-env:UserInstallation={profile.as_uri()}",
        f"--infilter={IMPORT_FILTERS[office_format]}",
        "--convert-to",
        export,
        "--outdir",
        str(out),
        str(source),
    ]
    if in_sandbox:
        args = sandbox.sandboxed(args, writable=scratch, readable=[path.resolve()])
    try:
        printed = run_command(args, timeout, beat, cwd=scratch)
    except CommandTimedOut as e:
        raise ExtractionFailed(
            f"The document could not be converted: LibreOffice gave up after {timeout:g} s."
        ) from e
    except CommandFailed as e:
        raise ExtractionFailed(f"The document could not be converted: LibreOffice: {e}.") from e
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if not out.is_dir() or not any(out.iterdir()):
        # soffice exits 0 and says "Error: source file could not be loaded".
        raise ExtractionFailed(
            "The document could not be converted: LibreOffice could not read it."
        )
    return out, printed


def office_to_pdf(
    path: Path,
    work: Path,
    timeout: float,
    beat: Beat,
    *,
    office_format: str | None = None,
    sandbox_only: bool = False,
) -> Path:
    """A PDF of an office document, alone in a new folder under `work`: the caller removes
    that folder (the PDF's parent) when done with it.

    `office_format` ("docx", "xls", ... as in kinds.OFFICE_TYPES) is sniffed from the file
    when not given; a file that is not an office document raises ExtractionFailed.
    """
    if office_format is None:
        office_format = _sniffed_format(path)
    scratch = Path(tempfile.mkdtemp(dir=work, prefix="soffice-"))
    try:
        out, _ = _convert(
            path, office_format, "pdf", scratch, timeout, beat, sandbox_only=sandbox_only
        )
        made = out / "document.pdf"
        if not made.is_file():
            raise ExtractionFailed("The document could not be converted: LibreOffice made no PDF.")
        result = made.rename(scratch / "document.pdf")
        shutil.rmtree(out)
        shutil.rmtree(scratch / "in")
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return result


def _sniffed_format(path: Path) -> str:
    kind = classify(path, sniff(path))
    if kind is None or kind.office_format is None:
        raise ExtractionFailed("Not an office document.")
    return kind.office_format


def extract_office(path: Path, kind: Kind, limits: TextLimits, beat: Beat, work: Path) -> Extracted:
    if kind.office_format is None:
        raise ValueError(f"not an office format: {kind}")
    if kind.family is Family.PRESENTATION:
        pdf_file = office_to_pdf(
            path, work, limits.timeout_seconds, beat, office_format=kind.office_format
        )
        try:
            slides = pdf.extract_pdf(pdf_file, limits, beat, work)
        finally:
            shutil.rmtree(pdf_file.parent, ignore_errors=True)
        return Extracted(
            text=slides.text,
            kind="presentation",
            pages=slides.pages,
            truncated=slides.truncated,
            metadata={"slides": slides.pages or 0},
        )
    scratch = Path(tempfile.mkdtemp(dir=work, prefix="soffice-"))
    try:
        if kind.family is Family.SPREADSHEET:
            return _spreadsheet(path, kind.office_format, limits, beat, scratch)
        out, _ = _convert(
            path, kind.office_format, TEXT_EXPORT, scratch, limits.timeout_seconds, beat
        )
        data, cut = plain.read_head(out / "document.txt", limits.max_chars * plain.BYTES_PER_CHAR)
        return Extracted(text=_utf8(data).strip(), kind="word processing document", truncated=cut)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _utf8(data: bytes) -> str:
    return data.decode("utf-8", "replace").removeprefix("\ufeff").replace("\x00", "")


def _spreadsheet(
    path: Path, office_format: str, limits: TextLimits, beat: Beat, scratch: Path
) -> Extracted:
    out, printed = _convert(path, office_format, CSV_EXPORT, scratch, limits.timeout_seconds, beat)
    # In sheet order, as soffice reports writing them; else in the order of their names.
    sheets = [(name, Path(file).resolve()) for name, file in _WRITING_SHEET.findall(printed)]
    written = sorted(file.resolve() for file in out.glob("*.csv"))
    if not sheets or {file for _, file in sheets} != set(written):
        sheets = [(f.stem.removeprefix("document-"), f) for f in written]
    budget = limits.max_chars * plain.BYTES_PER_CHAR
    blocks = []
    cut = False
    for name, file in sheets:
        if budget <= 0:
            cut = True
            break
        data, more = plain.read_head(file, budget)
        budget -= len(data)
        cut = cut or more
        blocks.append(f"Sheet: {name}\n{_utf8(data).strip()}")
    return Extracted(
        text="\n\n".join(blocks),
        kind="spreadsheet",
        truncated=cut,
        metadata={"sheets": len(sheets)},
    )

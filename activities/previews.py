"""What a thumbnail is drawn from when the file is not an image Pillow decodes: an SVG
rasterised by librsvg, an office document's first page (LibreOffice to PDF), a video's
poster frame (ffmpeg). Each gives a PNG beside the source, or a reason it cannot.

librsvg fetches nothing from the network and refuses external entities; the SVG is drawn
alone in its own folder, so a reference to a local file finds nothing. An office
package (OOXML, ODF) is drawn only when it links no file or address outside itself:
LibreOffice would draw a linked local image into the preview, and the worker holds other
files. The old binary formats (.doc, .xls, .ppt, RTF), whose links cannot be checked, are
drawn only by a LibreOffice that sees nothing else (activities/extract/sandbox.py).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from activities.extract.commands import CommandFailed, CommandTimedOut, run_command
from activities.extract.types import Beat

MAX_PART_BYTES = 64 * 1024 * 1024  # a part bigger than this is not read for links: no preview
# An OOXML relationship to something outside the package, other than a hyperlink (which
# LibreOffice never follows while drawing).
_OOXML_RELATIONSHIP = re.compile(rb"<Relationship\b[^>]*>", re.IGNORECASE)
# ODF elements whose xlink:href LibreOffice loads to draw the page.
_ODF_LOADED = re.compile(
    rb"<(?:draw:image|draw:object|draw:object-ole|draw:plugin|draw:fill-image|"
    rb"style:background-image|text:section-source|table:table-source)\b[^>]*?"
    rb'xlink:href\s*=\s*"([^"]*)"'
)


def _inside(href: bytes) -> bool:
    """A package-relative path ("Pictures/1.png", "./Object 1"): no scheme, not absolute,
    never climbing out with ".."."""
    if not href or b":" in href or href.startswith((b"/", b"\\")):
        return False
    return b".." not in href.replace(b"\\", b"/").split(b"/")


class PreviewRefused(Exception):
    """The file cannot be drawn; the message is one sentence."""


def render_svg(svg: Path, longest_side: int, timeout: float, beat: Beat) -> Path:
    png = svg.with_name("svg.png")
    command = ["rsvg-convert", "--width", str(longest_side), "--height", str(longest_side)]
    command += ["--keep-aspect-ratio", "--format", "png", "--output", str(png), str(svg)]
    try:
        run_command(command, timeout, beat, cwd=svg.parent)
    except CommandTimedOut as e:
        raise PreviewRefused(f"drawing the SVG took over {timeout:g} s") from e
    except CommandFailed as e:
        raise PreviewRefused(f"the SVG could not be drawn: {e}") from e
    if not png.is_file():
        raise PreviewRefused("the SVG could not be drawn")
    return png


def outside_link(package: Path) -> str | None:
    """The first link of an office package to anything outside it, or None."""
    try:
        with zipfile.ZipFile(package) as archive:
            for member in archive.infolist():
                if not member.filename.endswith((".xml", ".rels")):
                    continue
                if member.file_size > MAX_PART_BYTES:
                    return f"{member.filename} (too large to check)"
                data = archive.read(member)
                for relationship in _OOXML_RELATIONSHIP.findall(data):
                    external = b'TargetMode="External"' in relationship
                    if external and b'/hyperlink"' not in relationship:
                        return member.filename
                for href in _ODF_LOADED.findall(data):
                    if not _inside(href):
                        return str(href.decode("utf-8", "replace"))[:200]
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise PreviewRefused(f"the document is not a readable package: {e}") from e
    return None

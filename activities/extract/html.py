"""The visible text of an HTML document, with the standard library's parser.

Nothing a document links to is fetched: this only reads the markup. Script, style,
template and head contents and comments are left out; the title goes to metadata.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from activities.extract import plain
from activities.extract.types import Extracted

SKIPPED = {"script", "style", "template"}
# What a head holds; any other start tag ends it (browsers close an unclosed head so).
HEAD_TAGS = {"head", "title", "meta", "link", "base", "style", "script", "noscript", "template"}
# Elements that start a new line, and those that stand apart with a blank line around them.
LINES = {
    "br", "dd", "div", "dt", "figcaption", "legend", "li", "option", "summary", "tr",
}  # fmt: skip
PARAGRAPHS = {
    "address", "article", "aside", "blockquote", "caption", "details", "dialog", "dl",
    "fieldset", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
    "main", "nav", "ol", "p", "pre", "section", "table", "ul",
}  # fmt: skip
CELLS = {"td", "th"}
LINE, PARAGRAPH = 1, 2
# Bytes of markup read for at most `max_chars` characters of text.
BYTES_PER_CHAR = 8
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_SPACES = re.compile(r"[ \t\r\n\f\v]+")


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str | int] = []  # text, and LINE or PARAGRAPH breaks
        self.title: list[str] = []
        self._skipping = 0  # open script/style/template elements
        self._in_head = False
        self._in_title = False
        self._in_pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._in_head and tag not in HEAD_TAGS:
            self._in_head = False
        if tag == "head":
            self._in_head = True
        elif tag == "body":
            self._in_head = False
        elif tag in SKIPPED:
            self._skipping += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "pre":
            self._in_pre += 1
        self._break(tag)
        if tag in CELLS:
            self.parts.append("\t")

    def _break(self, tag: str) -> None:
        if tag in LINES:
            self.parts.append(LINE)
        elif tag in PARAGRAPHS:
            self.parts.append(PARAGRAPH)

    def handle_endtag(self, tag: str) -> None:
        if tag == "head":
            self._in_head = False
        elif tag in SKIPPED and self._skipping:
            self._skipping -= 1
        elif tag == "title":
            self._in_title = False
        elif tag == "pre" and self._in_pre:
            self._in_pre -= 1
        self._break(tag)

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        if self._in_title:
            self.title.append(data)
        elif not self._in_head:
            data = data.replace("\xa0", " ")
            self.parts.append(data if self._in_pre else _SPACES.sub(" ", data))

    def text(self) -> str:
        """The text, where each run of breaks becomes its strongest: a newline or a blank line."""
        out: list[str] = []
        pending = 0
        for part in self.parts:
            if isinstance(part, int):
                pending = max(pending, part)
            elif part.strip(" "):
                if pending and out:
                    out.append("\n" * pending)
                pending = 0
                out.append(part)
            elif out and not pending:
                out.append(part)  # the space between two inline elements
        return _tidy("".join(out))


def _tidy(text: str) -> str:
    """One space between words, a tab between table cells, no spaces around lines."""
    lines = (re.sub(r" *\t[ \t]*", "\t", re.sub(r" {2,}", " ", line)) for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.strip("\t ") for line in lines)).strip()


def html_to_text(markup: str) -> tuple[str, str]:
    """(visible text, title) of an HTML document."""
    parser = _VisibleText()
    parser.feed(markup)
    parser.close()
    title = _SPACES.sub(" ", "".join(parser.title)).strip()
    return parser.text(), title


def extract_html(path: Path, max_chars: int) -> Extracted:
    data, cut = plain.read_head(path, max_chars * BYTES_PER_CHAR)
    found = _META_CHARSET.search(data[:4096])
    declared = found.group(1).decode("ascii") if found else None
    if declared and declared.lower().startswith("utf-16"):
        declared = None  # markup read as ASCII cannot be UTF-16 (browsers say so too)
    markup, charset = plain.decode(data, declared=declared, cut=cut)
    text, title = html_to_text(markup.replace("\x00", ""))
    metadata: dict[str, str | int] = {"charset": charset}
    if title:
        metadata["title"] = title
    return Extracted(text=text, kind="html", truncated=cut, metadata=metadata)

"""HTML: the visible text only, entities decoded, nothing fetched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.extract import Extracted, TextLimits, extract_text
from activities.extract.html import html_to_text
from tests import extract_samples as samples


def _extract(tmp_path: Path, data: bytes, limits: TextLimits | None = None) -> Extracted:
    path = tmp_path / "page.html"
    path.write_bytes(data)
    return extract_text(path, "text/html", limits or TextLimits(), lambda: None, tmp_path)


def test_visible_text_only(tmp_path: Path) -> None:
    result = _extract(tmp_path, samples.make_html("Visible words"))
    assert result.text == "Heading\n\nVisible words & café\n\nfirst item\nsecond item"
    assert result.kind == "html"
    assert result.metadata == {"charset": "utf-8", "title": "Page title"}
    for hidden in ("secret", "not text", "template text", "scripted", "hidden comment", "color"):
        assert hidden not in result.text


def test_structure_and_whitespace() -> None:
    markup = (
        "<html><head><title>T</title><meta charset=utf-8>"  # head left open
        "<p>  implicit\n   body </p><table><tr><td>a</td><td> b </td></tr><tr><th>c</th></tr>"
        "</table>x&nbsp;y &lt;z&gt; &#x41;&#66;<br>tail <b>bold</b> <i>it</i><div>next</div>"
    )
    text, title = html_to_text(markup)
    assert title == "T"
    assert text == "implicit body\n\na\tb\nc\n\nx y <z> AB\ntail bold it\nnext"


def test_charset_from_meta(tmp_path: Path) -> None:
    page = '<html><head><meta charset="windows-1251"></head><body><p>Привет, мир</p></body></html>'
    result = _extract(tmp_path, page.encode("cp1251"))
    assert result.text == "Привет, мир"
    assert result.metadata["charset"] == "windows-1251"


def test_latin1_without_meta(tmp_path: Path) -> None:
    page = "<html><body><p>Grüße aus Köln, café naïve</p></body></html>".encode("latin-1")
    assert _extract(tmp_path, page).text == "Grüße aus Köln, café naïve"


def test_max_chars(tmp_path: Path) -> None:
    page = "<html><body>" + "<p>word</p>" * 2000 + "</body></html>"
    result = _extract(tmp_path, page.encode(), TextLimits(max_chars=100))
    assert len(result.text) == 100
    assert result.text.startswith("word\n\nword")
    assert result.truncated


@pytest.fixture
def web_server() -> Iterator[tuple[str, list[str]]]:
    with samples.recording_web_server() as server:
        yield server


def test_nothing_linked_is_fetched(tmp_path: Path, web_server: tuple[str, list[str]]) -> None:
    base, requests = web_server
    page = (
        f'<html><head><link rel="stylesheet" href="{base}/style.css">'
        f'<script src="{base}/app.js"></script></head><body><p>Linked page</p>'
        f'<img src="{base}/image.png"><iframe src="{base}/frame.html">frame</iframe>'
        f'<object data="{base}/object.svg"></object></body></html>'
    )
    assert _extract(tmp_path, page.encode()).text == "Linked page\n\nframe"
    assert requests == []

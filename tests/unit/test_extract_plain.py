"""Plain text: the charset found, BOMs honoured, NUL dropped, the size limited."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.extract import Extracted, TextLimits, extract_text


def _extract(tmp_path: Path, data: bytes, limits: TextLimits | None = None) -> Extracted:
    path = tmp_path / "doc.txt"
    path.write_bytes(data)
    return extract_text(path, "text/plain", limits or TextLimits(), lambda: None, tmp_path)


@pytest.mark.parametrize(
    ("data", "charset"),
    [
        ("Grüße aus Köln, café naïve\n".encode(), "utf-8"),
        ("Grüße aus Köln, café naïve\n".encode("latin-1"), "windows-1252"),
        ("“Smart quotes” – Grüße, café\n".encode("cp1252"), "windows-1252"),
        ("\ufeffGrüße aus Köln, café naïve\n".encode(), "utf-8"),
        ("Grüße aus Köln, café naïve\n".encode("utf-16"), "utf-16-le"),
        ("Grüße aus Köln, café naïve\n".encode("utf-16-be"), None),
    ],
)
def test_charsets(tmp_path: Path, data: bytes, charset: str | None) -> None:
    if charset is None:  # UTF-16 BE with its BOM
        data = b"\xfe\xff" + data
        charset = "utf-16-be"
    result = _extract(tmp_path, data)
    assert result.text == "Grüße aus Köln, café naïve\n" or result.text.endswith("Grüße, café\n")
    assert result.kind == f"plain text ({charset})"
    assert result.metadata == {"charset": charset}
    assert not result.truncated


def test_other_single_byte_charsets(tmp_path: Path) -> None:
    russian = "Москва — столица России, крупнейший по численности населения город страны.\n"
    result = _extract(tmp_path, russian.encode("cp1251"))
    assert (result.text, result.kind) == (russian, "plain text (windows-1251)")
    polish = "Zażółć gęślą jaźń. Polska jest państwem w Europie Środkowej, stolica: Warszawa.\n"
    result = _extract(tmp_path, polish.encode("cp1250"))
    assert (result.text, result.kind) == (polish, "plain text (windows-1250)")


@pytest.mark.parametrize(
    ("text", "charset"),
    [
        # Short Hungarian, whose ő and ű read as õ and û in windows-1252 too.
        ("Szőlő és gyümölcs.\n", "iso8859_2"),
        ("Tűzoltó őrség, Győr\n", "iso8859_2"),
        ("Erős szőlő, hű barát\n", "iso8859_2"),
        ("„Erős” szőlő\n", "cp1250"),
    ],
)
def test_short_hungarian_texts(tmp_path: Path, text: str, charset: str) -> None:
    result = _extract(tmp_path, text.encode(charset))
    assert result.text == text
    # The two read these bytes alike; windows-1250 is said when the bytes need it.
    expected = {"plain text (iso-8859-2)", "plain text (windows-1250)"}
    if charset == "cp1250":
        expected = {"plain text (windows-1250)"}
    assert result.kind in expected


@pytest.mark.parametrize(
    "text", ["Informações e opções.\n", "Você não sabe.\n", "Grüße aus Köln\n", "Château\n"]
)
def test_short_western_texts_stay_windows_1252(tmp_path: Path, text: str) -> None:
    result = _extract(tmp_path, text.encode("cp1252"))
    assert (result.text, result.kind) == (text, "plain text (windows-1252)")


def test_nul_is_dropped(tmp_path: Path) -> None:
    assert _extract(tmp_path, b"hello\x00 world\n").text == "hello world\n"


def test_csv_is_text(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"name,amount\nalice,3\n")
    result = extract_text(path, "text/csv", TextLimits(), lambda: None, tmp_path)
    assert result.text == "name,amount\nalice,3\n"


def test_max_chars_truncates(tmp_path: Path) -> None:
    result = _extract(tmp_path, "é".encode() * 5000, TextLimits(max_chars=1000))
    assert result.text == "é" * 1000
    assert result.truncated


def test_a_cut_inside_a_character_is_still_utf8(tmp_path: Path) -> None:
    # 4 bytes a character are read for each character kept: a cut lands inside "€".
    result = _extract(tmp_path, b"a" + "€".encode() * 400, TextLimits(max_chars=100))
    assert result.kind == "plain text (utf-8)"
    assert result.text == "a" + "€" * 99
    assert result.truncated

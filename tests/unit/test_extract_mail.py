"""E-mail: headers, text and HTML bodies, attachment names, forwarded e-mails."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.extract import Extracted, ExtractionFailed, TextLimits, extract_text
from tests import extract_samples as samples


def _extract(tmp_path: Path, data: bytes, content_type: str = "message/rfc822") -> Extracted:
    path = tmp_path / "mail.eml"
    path.write_bytes(data)
    return extract_text(path, content_type, TextLimits(), lambda: None, tmp_path)


def test_headers_body_and_attachments(tmp_path: Path) -> None:
    result = _extract(tmp_path, samples.make_eml())
    assert result.kind == "e-mail"
    assert result.text == (
        "From: Alice Example <alice@example.com>\n"
        "To: Bob <bob@example.com>\n"
        "Cc: Carol <carol@example.com>\n"
        "Subject: Quarterly report é\n"
        "Date: Mon, 01 Jan 2024 10:00:00 +0000\n"
        "Attachments: report.pdf, chart.png\n"
        "\n"
        "Plain words for Bob."
    )
    assert result.metadata == {
        "subject": "Quarterly report é",
        "from": "Alice Example <alice@example.com>",
        "date": "Mon, 01 Jan 2024 10:00:00 +0000",
    }


def test_forwarded_e_mail_is_read_too(tmp_path: Path) -> None:
    text = _extract(tmp_path, samples.make_eml(nested=True)).text
    body, forwarded = text.split("\n\n--- Attached e-mail ---\n\n")
    assert body.endswith("Plain words for Bob.")
    assert forwarded == (
        "From: Dave <dave@example.com>\nSubject: Original question\n\nNested words from Dave."
    )


def test_html_only_body_is_read_as_html(tmp_path: Path) -> None:
    eml = (
        b"From: a@example.com\r\nSubject: html\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>p{}</style></head><body><p>Hello <b>there</b></p>"
        b"<script>evil()</script></body></html>\r\n"
    )
    text = _extract(tmp_path, eml).text
    assert text == "From: a@example.com\nSubject: html\n\nHello there"


def test_broken_charsets_are_replaced_not_fatal(tmp_path: Path) -> None:
    eml = (
        b"From: a@example.com\nSubject: =?x-unknown?q?caf=E9?=\nMIME-Version: 1.0\n"
        b"Content-Type: multipart/mixed; boundary=B\n\n--B\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\n\ncaf\xe9 au lait\n--B\n"
        b"Content-Type: text/plain; charset=utf-8\n\nbad \xff\xfe bytes\n--B--\n"
    )
    result = _extract(tmp_path, eml)
    assert "café au lait" in result.text
    assert "bad \ufffd\ufffd bytes" in result.text


def test_e_mail_sniffed_as_plain_text(tmp_path: Path) -> None:
    eml = b"Message-ID: <1@x>\nFrom: a@example.com\nSubject: hi\n\nbody words\n"
    result = _extract(tmp_path, eml, "text/plain")
    assert result.kind == "e-mail"
    assert result.text == "From: a@example.com\nSubject: hi\n\nbody words"


def test_not_an_e_mail(tmp_path: Path) -> None:
    with pytest.raises(ExtractionFailed, match="^Not a readable e-mail"):
        _extract(tmp_path, b"\x00\x01 nothing like headers here")

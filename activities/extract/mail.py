"""E-mail (message/rfc822): headers, text and HTML parts, attachment names, forwarded mails.

Parsed with the standard library's `email` (policy.default). A part in a charset Python
does not know, or with bytes its charset cannot hold, is read with replacement characters.
"""

from __future__ import annotations

from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from pathlib import Path

from activities.extract import plain
from activities.extract.html import html_to_text
from activities.extract.types import Extracted, ExtractionFailed

HEADERS = ("From", "To", "Cc", "Subject", "Date")
MAX_MESSAGE_DEPTH = 3  # forwarded e-mails inside e-mails, read this deep
MAX_PART_DEPTH = 20  # multiparts inside multiparts
MAX_BYTES = 64 * 1024 * 1024  # of the message parsed; the rest is cut


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
        return "" if value is None else " ".join(str(value).split())
    except Exception:  # a header the parser chokes on is left out, not the whole message
        return ""


def _text_of(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, str):
            return content
    except (LookupError, UnicodeError, ValueError, AssertionError, KeyError):
        pass
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return plain.decode(payload)[0]


class _Reader:
    def __init__(self) -> None:
        self.blocks: list[str] = []

    def message(self, message: Message, depth: int) -> None:
        found = _Parts()
        found.walk(message, 0)
        lines = [f"{name}: {value}" for name in HEADERS if (value := _header(message, name))]
        if found.attachments:
            lines.append("Attachments: " + ", ".join(found.attachments))
        self.blocks.append("\n".join(lines))
        self.blocks.extend(body for body in found.bodies if body)
        if depth < MAX_MESSAGE_DEPTH:
            for inner in found.forwarded:
                self.blocks.append("--- Attached e-mail ---")
                self.message(inner, depth + 1)


class _Parts:
    """One message's texts and attachment names, and the e-mails attached to it."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.attachments: list[str] = []
        self.forwarded: list[Message] = []

    def walk(self, part: Message, nesting: int) -> None:
        if nesting > MAX_PART_DEPTH:
            return
        content_type = part.get_content_type()
        filename = part.get_filename()
        if content_type == "message/rfc822":
            if filename:
                self.attachments.append(filename)
            inner = part.get_payload()
            if isinstance(inner, list):
                self.forwarded.extend(m for m in inner[:1] if isinstance(m, Message))
        elif part.is_multipart():
            payload = part.get_payload()
            children = [c for c in payload if isinstance(c, Message)]
            if content_type == "multipart/alternative" and children:
                children = [_preferred(children)]
            for child in children:
                self.walk(child, nesting + 1)
        elif filename or part.get_content_disposition() == "attachment":
            self.attachments.append(filename or f"(unnamed {content_type})")
        elif content_type == "text/html":
            self.bodies.append(html_to_text(_text_of(part))[0])
        elif part.get_content_maintype() == "text":
            self.bodies.append(_text_of(part).strip())


def _preferred(children: list[Message]) -> Message:
    """Of alternatives, the plain text if there is one, else HTML, else the last (richest)."""
    for wanted in ("text/plain", "text/html"):
        for child in children:
            if child.get_content_type() == wanted and not child.get_filename():
                return child
    return children[-1]


def extract_email(path: Path) -> Extracted:
    data, cut = plain.read_head(path, MAX_BYTES)
    try:
        message = BytesParser(policy=policy.default).parsebytes(data)
        reader = _Reader()
        reader.message(message, 0)
    except RecursionError as e:
        raise ExtractionFailed("The e-mail is nested too deeply to read.") from e
    metadata: dict[str, str | int] = {
        key: value
        for key, name in (("subject", "Subject"), ("from", "From"), ("date", "Date"))
        if (value := _header(message, name))
    }
    if not isinstance(message, EmailMessage) or not metadata:
        raise ExtractionFailed("Not a readable e-mail: it has no From, Subject or Date.")
    return Extracted(
        text="\n\n".join(reader.blocks).replace("\x00", ""),
        kind="e-mail",
        truncated=cut,
        metadata=metadata,
    )

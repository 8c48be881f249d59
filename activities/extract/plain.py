"""Plain text (text/*, not HTML): the charset found, BOMs honoured, NUL dropped."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

import charset_normalizer

from activities.extract.types import Extracted

# Longest first: a UTF-32 LE BOM starts with the UTF-16 LE one.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Bytes read for at most `max_chars` characters: no charset takes more than 4 a character.
BYTES_PER_CHAR = 4
# When several single-byte charsets read the bytes equally well, the most common wins.
PREFERRED = "cp1252"
# Hungarian's ő and ű (0xF5, 0xFB in ISO-8859-2 and windows-1250) read as õ and û in
# windows-1252, letters too, so a short text ties. Read as windows-1252, Hungarian has õ or
# û and none of the letters of the languages that have them there (Portuguese ã ç, French
# à è ê â î ô, Estonian ä): then it is Central European.
HUNGARIAN_TELLS = frozenset("õûÕÛ")
WESTERN_TELLS = frozenset("ãçàèêâîôœäÃÇÀÈÊÂÎÔŒÄ")
CENTRAL_EUROPEAN = ("iso8859_2", "cp1250")


def label(encoding: str) -> str:
    """The usual name of a Python codec: cp1252 -> windows-1252, iso8859_2 -> iso-8859-2."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        return encoding
    if re.fullmatch(r"cp125\d", name):
        return "windows-" + name[2:]
    if name.startswith("iso8859-"):
        return "iso-" + name[3:]
    return {"latin-1": "iso-8859-1", "ascii": "utf-8"}.get(name, name)


def _strict_utf8(data: bytes, cut: bool) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        # A read cut short may end inside a character.
        if cut and e.start >= len(data) - 3 and e.reason == "unexpected end of data":
            return data[: e.start].decode("utf-8")
        return None


def _detect(data: bytes) -> str:
    """The charset charset_normalizer reads the bytes with least noise and most like a
    language; among equals, windows-1252 when it is one of them."""
    matches = list(charset_normalizer.from_bytes(data))
    if not matches:
        return "utf-8"
    least_chaos = min(match.chaos for match in matches)
    calm = [match for match in matches if match.chaos == least_chaos]
    most_coherent = max(match.coherence for match in calm)
    best = [match for match in calm if match.coherence == most_coherent]
    if any(PREFERRED in match.could_be_from_charset for match in best):
        central = any(c in m.could_be_from_charset for m in best for c in CENTRAL_EUROPEAN)
        if central and _reads_as_hungarian(data.decode(PREFERRED, "replace")):
            # windows-1250 only if it uses the bytes ISO-8859-2 keeps for control codes
            return "cp1250" if any(0x80 <= b <= 0x9F for b in data) else "iso8859_2"
        return PREFERRED
    return str(best[0].encoding)


def _reads_as_hungarian(western: str) -> bool:
    letters = set(western)
    return bool(letters & HUNGARIAN_TELLS) and not letters & WESTERN_TELLS


def decode(data: bytes, *, declared: str | None = None, cut: bool = False) -> tuple[str, str]:
    """(text, charset label) of bytes: BOM, else `declared` (a document's own charset),
    else UTF-8 when the bytes are valid UTF-8, else what charset_normalizer finds."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, "replace"), label(encoding)
    if declared:
        try:
            return data.decode(declared, "replace"), label(declared)
        except LookupError:
            pass
    text = _strict_utf8(data, cut)
    if text is not None:
        return text, "utf-8"
    encoding = _detect(data)
    return data.decode(encoding, "replace"), label(encoding)


def read_head(path: Path, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of a file, and whether there was more."""
    with path.open("rb") as f:
        data = f.read(limit + 1)
    return data[:limit], len(data) > limit


def extract_plain(path: Path, max_chars: int) -> Extracted:
    data, cut = read_head(path, max_chars * BYTES_PER_CHAR)
    text, charset = decode(data, cut=cut)
    return Extracted(
        text=text.replace("\x00", ""),
        kind=f"plain text ({charset})",
        truncated=cut,
        metadata={"charset": charset},
    )

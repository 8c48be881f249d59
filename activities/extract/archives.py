"""Listing zip and tar archives (names and sizes) without extracting anything.

A zip's central directory is read entry by entry, up to the limit, so an archive with
millions of entries costs no more than the entries listed (the standard library's zipfile
reads the whole directory first). Tars are read with tarfile, through a reader that
gives up after the deadline: reaching the next header of a compressed tar means
decompressing everything before it.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
import tarfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from activities.extract.types import Beat, Extracted, ExtractionFailed, NotApplicable


class BadArchive(Exception):
    pass


@dataclass(frozen=True)
class ZipEntry:
    name: str
    size: int  # uncompressed
    compressed_size: int
    method: int
    flags: int
    header_offset: int  # of the local header, from the start of the file

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & 0x1)


_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # central directory file header, 46 bytes
_LOCAL = struct.Struct("<4s5H3L2H")  # local file header, 30 bytes
_MAX_COMMENT = 0xFFFF


def _find_directory(f: IO[bytes]) -> tuple[int, int, int]:
    """(entries, directory offset, shift) of a zip: the offsets it records plus `shift` are
    offsets in the file (bytes before the zip, as a self-extractor's stub, shift them)."""
    size = f.seek(0, io.SEEK_END)
    tail_start = max(0, size - _EOCD.size - _MAX_COMMENT)
    f.seek(tail_start)
    tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    while at != -1 and at + _EOCD.size > len(tail):
        at = tail.rfind(b"PK\x05\x06", 0, at)
    if at == -1:
        raise BadArchive("no end of central directory")
    _, _, _, _, entries, dir_size, dir_offset, _ = _EOCD.unpack_from(tail, at)
    eocd = tail_start + at
    zip64 = entries == 0xFFFF or dir_size == 0xFFFFFFFF or dir_offset == 0xFFFFFFFF
    end_of_directory = eocd
    if zip64 and at >= _EOCD64_LOCATOR.size:
        signature, _, eocd64, _ = _EOCD64_LOCATOR.unpack_from(tail, at - _EOCD64_LOCATOR.size)
        if signature == b"PK\x06\x07":
            f.seek(eocd64)
            record = f.read(_EOCD64.size)
            if len(record) != _EOCD64.size or record[:4] != b"PK\x06\x06":
                raise BadArchive("bad zip64 end of central directory")
            _, _, _, _, _, _, _, entries, dir_size, dir_offset = _EOCD64.unpack(record)
            end_of_directory = eocd64
    shift = end_of_directory - dir_size - dir_offset
    if shift < 0:
        raise BadArchive("central directory outside the file")
    return entries, dir_offset + shift, shift


def _zip64_sizes(extra: bytes, size: int, compressed: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, pos)
        if tag == 0x0001:
            values = extra[pos + 4 : pos + 4 + length]
            fields = [size, compressed, offset]
            index = 0
            for i, value in enumerate(fields):
                if value == 0xFFFFFFFF and index + 8 <= len(values):
                    fields[i] = struct.unpack_from("<Q", values, index)[0]
                    index += 8
            return fields[0], fields[1], fields[2]
        pos += 4 + length
    return size, compressed, offset


@dataclass(frozen=True)
class ZipDirectory:
    total: int  # entries the archive says it has
    entries: list[ZipEntry]  # the first of them, up to the limit asked for


def zip_entries(path: Path, limit: int) -> ZipDirectory:
    """The first `limit` entries of a zip's central directory."""
    try:
        with path.open("rb") as f:
            total, offset, shift = _find_directory(f)
            f.seek(offset)
            entries = []
            for _ in range(min(total, limit)):
                header = f.read(_CENTRAL.size)
                if len(header) != _CENTRAL.size or header[:4] != b"PK\x01\x02":
                    raise BadArchive("bad central directory entry")
                fields = _CENTRAL.unpack(header)
                flags, method = fields[3], fields[4]
                compressed, size = fields[8], fields[9]
                name_len, extra_len, comment_len = fields[10], fields[11], fields[12]
                raw_name = f.read(name_len)
                extra = f.read(extra_len)
                f.seek(comment_len, io.SEEK_CUR)
                size, compressed, local = _zip64_sizes(extra, size, compressed, fields[16])
                name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
                entries.append(ZipEntry(name, size, compressed, method, flags, local + shift))
            return ZipDirectory(total, entries)
    except (OSError, struct.error) as e:
        raise BadArchive(str(e)) from e


def read_small_member(path: Path, entry: ZipEntry) -> bytes:
    """The bytes of a small stored or deflated member (an ODF package's `mimetype`)."""
    if entry.encrypted or entry.method not in (0, 8) or entry.compressed_size > 4096:
        raise BadArchive("member not readable here")
    with path.open("rb") as f:
        f.seek(entry.header_offset)
        header = f.read(_LOCAL.size)
        if len(header) != _LOCAL.size or header[:4] != b"PK\x03\x04":
            raise BadArchive("bad local header")
        fields = _LOCAL.unpack(header)
        f.seek(fields[9] + fields[10], io.SEEK_CUR)
        data = f.read(entry.compressed_size)
    if entry.method == 8:
        try:
            data = zlib.decompressobj(-15).decompress(data, 4096)
        except zlib.error as e:
            raise BadArchive(str(e)) from e
    return data


# ---------------------------------------------------------------- listings


def _listing(lines: list[str], total: int | None, kind: str) -> Extracted:
    """`total` None: there are more entries than listed, how many is not known."""
    listed = len(lines)
    metadata: dict[str, str | int] = {"entries_listed": listed}
    if total is not None:
        metadata["entries"] = total
    truncated = total is None or total > listed
    if truncated:
        more = "more entries" if total is None else f"{total - listed} more entries"
        lines = [*lines, f"... and {more}, not listed"]
    return Extracted(text="\n".join(lines), kind=kind, truncated=truncated, metadata=metadata)


def _describe(name: str, size: int, *, directory: bool = False, note: str = "") -> str:
    if directory:
        return name if name.endswith("/") else name + "/"
    return f"{name} ({size} bytes{note})"


def list_zip(path: Path, max_entries: int) -> Extracted:
    try:
        directory = zip_entries(path, max_entries)
    except BadArchive as e:
        raise ExtractionFailed("Not a readable zip archive.") from e
    lines = [
        _describe(
            e.name,
            e.size,
            directory=e.name.endswith("/"),
            note=", encrypted" if e.encrypted else "",
        )
        for e in directory.entries
    ]
    return _listing(lines, directory.total, "zip listing")


class _Deadline(io.RawIOBase):
    """Reads a (decompressing) stream until the deadline, calling `beat` on the way."""

    def __init__(self, inner: io.BufferedIOBase, deadline: float, beat: Beat) -> None:
        self._inner = inner
        self._deadline = deadline
        self._beat = beat
        self._next_beat = time.monotonic() + 2.0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        now = time.monotonic()
        if now > self._deadline:
            raise _OutOfTime
        if now > self._next_beat:
            self._beat()
            self._next_beat = now + 2.0
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _OutOfTime(Exception):
    pass


def _decompressor(path: Path) -> Callable[[Path], io.BufferedIOBase] | None:
    """How to open the file decompressed, by its magic; None when it is not compressed."""
    with path.open("rb") as f:
        head = f.read(6)
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile
    if head.startswith(b"BZh"):
        return bz2.BZ2File
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile
    return None


_DECOMPRESSION_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)


def _is_tar_header(block: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def list_tar(path: Path, max_entries: int, timeout: float, beat: Beat) -> Extracted:
    """A tar's listing, compressed (gzip, bzip2, xz) or not.

    Raises NotApplicable for a compressed file with no tar inside.
    """
    deadline = time.monotonic() + timeout
    opener = _decompressor(path)
    if opener is None:  # a plain tar: members are skipped by seeking
        try:
            with tarfile.open(path, mode="r:") as archive:
                return _list_members(archive, max_entries)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ExtractionFailed("Not a readable tar archive.") from e
    try:
        with opener(path) as stream:
            first = stream.read(tarfile.BLOCKSIZE)
    except _DECOMPRESSION_ERRORS as e:
        raise ExtractionFailed("Not a readable compressed file.") from e
    if not _is_tar_header(first):
        raise NotApplicable("a compressed file with no tar archive inside")
    try:
        with opener(path) as stream:
            reader = io.BufferedReader(_Deadline(stream, deadline, beat))
            with tarfile.open(fileobj=reader, mode="r|") as archive:
                return _list_members(archive, max_entries)
    except _OutOfTime as e:
        raise ExtractionFailed(f"Listing the archive took longer than {timeout:g} s.") from e
    except (tarfile.TarError, *_DECOMPRESSION_ERRORS) as e:
        raise ExtractionFailed("Not a readable tar archive.") from e


def _list_members(archive: tarfile.TarFile, max_entries: int) -> Extracted:
    lines: list[str] = []
    for member in archive:
        if len(lines) == max_entries:
            return _listing(lines, None, "tar listing")
        lines.append(_describe_tar(member))
    return _listing(lines, len(lines), "tar listing")


def _describe_tar(member: tarfile.TarInfo) -> str:
    if member.issym() or member.islnk():
        return f"{member.name} -> {member.linkname}"
    if member.isdir():
        return _describe(member.name, 0, directory=True)
    if not member.isfile():
        return f"{member.name} (special file)"
    return _describe(member.name, member.size)

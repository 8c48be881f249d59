"""What is uploaded: a path or a binary file object, read at offsets without loading it whole."""

from __future__ import annotations

import base64
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from conveyor_client._checksums import PartChecksum, new_hasher

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class PartRange:
    """Part `number` (1-based) is bytes [start, end) of the file."""

    number: int
    start: int
    end: int

    @property
    def size(self) -> int:
        """The part's length in bytes."""
        return self.end - self.start


def part_ranges(size: int, part_size: int) -> list[PartRange]:
    """Part i (1-based) is bytes [(i-1)*part_size, min(i*part_size, size)); at least one part."""
    if part_size <= 0:
        raise ValueError("part_size must be positive")
    if size < 0:
        raise ValueError("size must not be negative")
    count = max(1, -(-size // part_size))
    return [
        PartRange(i, (i - 1) * part_size, min(i * part_size, size)) for i in range(1, count + 1)
    ]


MIB = 1024 * 1024
# What the server does by default (its settings may differ; its answer always wins):
# multipart from 32 MiB, parts of 8 MiB grown in whole MiB towards 100 parts (up to 64 MiB),
# and larger when needed so that no file needs more than 10,000 parts.
LIKELY_MULTIPART = 32 * MIB


def likely_part_size(size: int) -> int:
    """The part size the server would choose for `size` bytes by default."""

    def whole_mib(n: int) -> int:
        return -(-n // MIB) * MIB

    toward_100_parts = min(whole_mib(-(-size // 100)), 64 * MIB)
    return max(8 * MIB, toward_100_parts, whole_mib(-(-size // 10_000)))


def b64_digest(digest: bytes) -> str:
    """A digest as the base64 text S3 checksum headers carry."""
    return base64.b64encode(digest).decode("ascii")


class Source:
    """A file to upload; thread-safe reads at offsets (`os.pread` where there is a descriptor).

    A stream that cannot seek (a pipe, standard input, an HTTP body) is first copied to a
    temporary file (under TMPDIR): the upload declares its size, and retried or resent parts
    read their bytes again.

    Attributes:
        name: The file name to declare (basename of the path or of the object's `name`).
        size: Its length in bytes, fixed when the source is opened.
        path: The absolute path when it came from one (resume state is kept only then).
        mtime_ns: The path's modification time, part of the resume key.
        spooled: Whether the bytes were copied from a stream that cannot seek.
    """

    def __init__(self, target: str | os.PathLike[str] | BinaryIO) -> None:
        self._owned = False
        self._lock = threading.Lock()
        self.path: Path | None = None
        self.mtime_ns = 0
        self.spooled = False
        if isinstance(target, str | os.PathLike):
            self.path = Path(target).expanduser().resolve()
            self._file: BinaryIO = open(self.path, "rb")  # noqa: SIM115 - closed by close()
            self._owned = True
            stat = os.fstat(self._file.fileno())
            self.size = stat.st_size
            self.mtime_ns = stat.st_mtime_ns
            self.name = self.path.name
        else:
            self.name = _name_of(target)
            if _seekable(target):
                self._file = target
                self._base = target.tell()
                self.size = target.seek(0, io.SEEK_END) - self._base
                target.seek(self._base)
            else:
                self._file = _spool(target)
                self._owned = self.spooled = True
                self.size = self._file.seek(0, io.SEEK_END)
        self._fd = self._descriptor()

    def _descriptor(self) -> int | None:
        try:
            return self._file.fileno()
        except (OSError, AttributeError, io.UnsupportedOperation):
            return None

    def read_at(self, offset: int, length: int) -> bytes:
        """Reads up to `length` bytes at `offset` (relative to where the source started)."""
        if self._fd is not None:
            return os.pread(self._fd, length, self._offset(offset))
        with self._lock:
            self._file.seek(self._offset(offset))
            return self._file.read(length)

    def read_into(self, offset: int, buffer: memoryview) -> int:
        """Fills `buffer` with the bytes at `offset`; returns how many were read (0 at the
        end). With a descriptor the bytes go straight into the buffer, nothing allocated."""
        if self._fd is not None and hasattr(os, "preadv"):
            return os.preadv(self._fd, [buffer], self._offset(offset))
        data = self.read_at(offset, len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _offset(self, offset: int) -> int:
        return offset + (0 if self._owned else self._base)

    def chunks(self, start: int, end: int, chunk: int = CHUNK) -> Iterator[bytes]:
        """Yields bytes [start, end) in chunks; raises if the file became shorter."""
        position = start
        while position < end:
            data = self.read_at(position, min(chunk, end - position))
            if not data:
                raise OSError(f"{self.name} is shorter than when the upload started")
            position += len(data)
            yield data

    def sha256(self, start: int = 0, end: int | None = None) -> bytes:
        """The SHA-256 digest of bytes [start, end) (the whole file by default)."""
        return self.digest("sha256", start, end)

    def digest(self, algorithm: PartChecksum, start: int = 0, end: int | None = None) -> bytes:
        """The `algorithm` digest of bytes [start, end) (the whole file by default)."""
        hasher = new_hasher(algorithm)
        for data in self.chunks(start, self.size if end is None else end):
            hasher.update(data)
        return hasher.digest()

    def close(self) -> None:
        """Closes the file if this source opened it."""
        if self._owned:
            self._file.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _name_of(stream: BinaryIO) -> str:
    """The basename of a file object's `name`; none for a descriptor number or a pseudo name
    such as standard input's `<stdin>`."""
    name = getattr(stream, "name", None)
    if not isinstance(name, str) or name.startswith("<"):
        return "upload.bin"
    return os.path.basename(name) or "upload.bin"


def _seekable(stream: BinaryIO) -> bool:
    try:
        if not stream.seekable():
            return False
        stream.tell()
    except (OSError, AttributeError, io.UnsupportedOperation):
        return False
    return True


def _spool(stream: BinaryIO) -> BinaryIO:
    """The rest of `stream` in an anonymous temporary file (gone once closed)."""
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - the Source closes it
    try:
        shutil.copyfileobj(stream, spool, CHUNK)
    except BaseException:
        spool.close()
        raise
    return spool

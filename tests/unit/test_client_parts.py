"""Part layout, offset reads and checksums of the client (pure logic)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from conveyor_client._client import _held
from conveyor_client._models import Upload, UploadPart
from conveyor_client._multipart import _lifetime
from conveyor_client._source import PartRange, Source, b64_digest, part_ranges
from conveyor_client._state import UploadState

MIB = 1024 * 1024


def test_part_ranges_cover_the_file_exactly() -> None:
    ranges = part_ranges(10 * MIB + 3, 4 * MIB)
    assert ranges == [
        PartRange(1, 0, 4 * MIB),
        PartRange(2, 4 * MIB, 8 * MIB),
        PartRange(3, 8 * MIB, 10 * MIB + 3),
    ]
    assert sum(r.size for r in ranges) == 10 * MIB + 3


def test_part_ranges_exact_multiple_has_no_empty_tail() -> None:
    ranges = part_ranges(8 * MIB, 4 * MIB)
    assert [r.number for r in ranges] == [1, 2]
    assert ranges[-1].end == 8 * MIB


def test_part_ranges_empty_file_is_one_empty_part() -> None:
    assert part_ranges(0, MIB) == [PartRange(1, 0, 0)]


def test_part_ranges_reject_bad_sizes() -> None:
    with pytest.raises(ValueError):
        part_ranges(10, 0)
    with pytest.raises(ValueError):
        part_ranges(-1, 10)


def test_source_reads_at_offsets_from_a_path(tmp_path: Path) -> None:
    data = bytes(range(256)) * 100
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with Source(path) as source:
        assert source.size == len(data)
        assert source.name == "f.bin"
        assert source.path == path.resolve()
        assert source.read_at(1000, 10) == data[1000:1010]
        assert b"".join(source.chunks(5, 20_000, chunk=777)) == data[5:20_000]
        assert source.sha256(100, 5000) == hashlib.sha256(data[100:5000]).digest()
        assert source.sha256() == hashlib.sha256(data).digest()


def test_source_reads_a_file_object_from_its_position() -> None:
    buffer = io.BytesIO(b"headerpayload")
    buffer.seek(6)
    with Source(buffer) as source:
        assert source.size == 7
        assert source.path is None
        assert source.read_at(0, 3) == b"pay"
        assert source.sha256() == hashlib.sha256(b"payload").digest()


def test_source_copies_a_stream_that_cannot_seek_from_where_it_stands() -> None:
    data = bytes(range(256)) * 5000  # more than one copy chunk
    read_end, write_end = os.pipe()
    writer = threading.Thread(target=_write_and_close, args=(write_end, b"skipped" + data))
    writer.start()
    with os.fdopen(read_end, "rb") as pipe:
        assert pipe.read(7) == b"skipped"
        with Source(pipe) as source:
            writer.join()
            assert source.spooled and source.path is None
            assert source.size == len(data)
            assert source.name == "upload.bin"  # a pipe's name is its descriptor number
            assert source.read_at(300_000, 5) == data[300_000:300_005]
            assert source.sha256() == hashlib.sha256(data).digest()


def _write_and_close(descriptor: int, data: bytes) -> None:
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)


class _Unseekable(io.RawIOBase):
    """A stream with a name, such as an HTTP body or a socket file."""

    name = "/exports/report.pdf"

    def __init__(self, data: bytes) -> None:
        self._rest = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._rest.readinto(buffer)


def test_source_names_a_stream_by_its_name_and_never_by_a_pseudo_name() -> None:
    with Source(_Unseekable(b"pdf bytes")) as source:  # type: ignore[arg-type]
        assert (source.name, source.size, source.spooled) == ("report.pdf", 9, True)
        assert source.read_at(0, 100) == b"pdf bytes"
    stdin_like = _Unseekable(b"")
    stdin_like.name = "<stdin>"
    with Source(stdin_like) as source:  # type: ignore[arg-type]
        assert (source.name, source.size) == ("upload.bin", 0)


def test_source_notices_a_file_that_shrank(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 100)
    with Source(path) as source:
        path.write_bytes(b"x" * 10)
        with pytest.raises(OSError, match="shorter"):
            list(source.chunks(0, 100))


def test_b64_digest_is_what_s3_checksum_headers_carry() -> None:
    digest = hashlib.sha256(b"abc").digest()
    assert b64_digest(digest) == base64.b64encode(digest).decode()
    assert len(b64_digest(digest)) == 44


def test_url_lifetime_uses_the_server_clock_and_a_margin() -> None:
    server_now = datetime(2030, 1, 1, tzinfo=UTC)
    expires = (server_now + timedelta(seconds=120)).isoformat()
    # 120 s on the server's clock, minus a quarter (at most 30 s); the local clock is ignored.
    assert _lifetime(expires, format_datetime(server_now, usegmt=True)) == pytest.approx(90)
    long = (server_now + timedelta(seconds=900)).isoformat()
    assert _lifetime(long, format_datetime(server_now, usegmt=True)) == pytest.approx(870)
    past = (server_now - timedelta(seconds=5)).isoformat()
    assert _lifetime(past, format_datetime(server_now, usegmt=True)) == 0


def _state(size: int, part_size: int) -> UploadState:
    return UploadState(
        api_url="http://api",
        path="/f",
        size=size,
        mtime_ns=1,
        upload_id="u",
        file_id="f",
        part_size=part_size,
        part_count=len(part_ranges(size, part_size)),
        sha256="0" * 64,
    )


def test_held_parts_keep_only_whole_parts_of_this_layout() -> None:
    state = _state(10 * MIB, 4 * MIB)
    upload = Upload(
        upload_id="u",
        file_id="f",
        method="MULTIPART",
        status="awaiting_upload",
        expires_at=None,
        part_size=4 * MIB,
        part_count=3,
        parts=[
            UploadPart(1, 4 * MIB, '"a"'),
            UploadPart(2, 1 * MIB, '"b"'),  # a truncated part is sent again
            UploadPart(3, 2 * MIB, '"c"'),
            UploadPart(4, 4 * MIB, '"d"'),  # not a part of this layout
        ],
    )
    assert _held(upload, state) == {1: '"a"', 3: '"c"'}

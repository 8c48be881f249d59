"""The client's pre-upload hashing: the whole file and its parts on two threads (pure logic)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from pathlib import Path

import pytest

from conveyor_client._digests import file_digests
from conveyor_client._source import CHUNK, Source, part_ranges


def _expected_parts(data: bytes, part_size: int) -> dict[int, str]:
    return {
        r.number: base64.b64encode(hashlib.sha256(data[r.start : r.end]).digest()).decode()
        for r in part_ranges(len(data), part_size)
    }


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 17])
def test_whole_and_part_digests_match_hashlib(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    part_size = CHUNK + 5  # parts that do not line up with the read buffer
    with Source(path) as source:
        digests = file_digests(source, part_ranges(size, part_size))
    assert digests.sha256 == hashlib.sha256(data).hexdigest()
    assert digests.parts == _expected_parts(data, part_size)


def test_without_ranges_only_the_whole_file_is_hashed(tmp_path: Path) -> None:
    data = os.urandom(CHUNK + 3)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with Source(path) as source:
        digests = file_digests(source, None)
    assert digests == type(digests)(hashlib.sha256(data).hexdigest(), {})


def test_a_file_object_without_descriptor_is_hashed_from_its_position() -> None:
    data = os.urandom(2 * CHUNK + 9)
    buffer = io.BytesIO(b"ignored-header" + data)
    buffer.seek(len(b"ignored-header"))
    with Source(buffer) as source:
        digests = file_digests(source, part_ranges(source.size, CHUNK))
    assert digests.sha256 == hashlib.sha256(data).hexdigest()
    assert digests.parts == _expected_parts(data, CHUNK)


def test_a_set_stop_event_interrupts_the_hashing(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(4 * CHUNK))
    stop = threading.Event()
    stop.set()
    with Source(path) as source, pytest.raises(KeyboardInterrupt):
        file_digests(source, part_ranges(source.size, CHUNK), stop)
    assert not [t for t in threading.enumerate() if t.name == "conveyor-sha256"]


def test_a_file_that_shrank_is_an_error_not_a_wrong_digest(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(3 * CHUNK))
    with Source(path) as source:
        path.write_bytes(b"short")
        with pytest.raises(OSError, match="shorter"):
            file_digests(source, part_ranges(source.size, CHUNK))
        with pytest.raises(OSError, match="shorter"):
            file_digests(source, None)  # the failure comes from the whole-file thread
    assert not [t for t in threading.enumerate() if t.name == "conveyor-sha256"]

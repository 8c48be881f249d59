"""The client's pre-upload hashing: SHA-256 of the whole file and its parts on two threads,
or CRC64NVME of both in one read (pure logic)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from pathlib import Path

import pytest

from conveyor_client._checksums import Crc64Nvme
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
    assert digests == type(digests)(hashlib.sha256(data).hexdigest(), None, {})


def _crc64(data: bytes) -> str:
    crc = Crc64Nvme()
    crc.update(data)
    return base64.b64encode(crc.digest()).decode()


def test_crc64nvme_matches_the_reference_check_value() -> None:
    # The CRC-64/NVME catalogue's check value: the CRC of "123456789".
    crc = Crc64Nvme()
    crc.update(b"1234")
    crc.update(memoryview(b"56789"))
    assert crc.digest().hex() == "ae8b14860a799888"


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, 3 * CHUNK + 17])
def test_crc64nvme_parts_and_whole_file_in_one_read(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    part_size = CHUNK + 5
    with Source(path) as source:
        digests = file_digests(source, part_ranges(size, part_size), part_checksum="crc64nvme")
        assert source.digest("crc64nvme", 7, min(size, 9000)) == bytes.fromhex(
            base64.b64decode(_crc64(data[7:9000])).hex()
        )
    assert digests.sha256 is None and digests.crc64nvme == _crc64(data)
    assert digests.parts == {
        r.number: _crc64(data[r.start : r.end]) for r in part_ranges(size, part_size)
    }


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

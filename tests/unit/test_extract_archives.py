"""Archives: the listing (names and sizes), never the contents; limits; broken archives."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path
from typing import IO, cast

import pytest

from activities.extract import Extracted, ExtractionFailed, NotApplicable, TextLimits, extract_text
from tests import extract_samples as samples

MEMBERS = {"docs/readme.txt": b"hello", "docs/data.bin": b"\x00" * 1000, "top.csv": b"a,b\n"}
LISTING = "docs/readme.txt (5 bytes)\ndocs/data.bin (1000 bytes)\ntop.csv (4 bytes)"


def _extract(
    tmp_path: Path, data: bytes, content_type: str, limits: TextLimits | None = None
) -> Extracted:
    path = tmp_path / "archive"
    path.write_bytes(data)
    return extract_text(path, content_type, limits or TextLimits(), lambda: None, tmp_path)


def test_zip_listing(tmp_path: Path) -> None:
    result = _extract(tmp_path, samples.make_zip(MEMBERS), "application/zip")
    assert (result.text, result.kind, result.truncated) == (LISTING, "zip listing", False)
    assert result.metadata == {"entries": 3, "entries_listed": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["archive"]  # nothing extracted


def test_zip_with_a_stub_before_it_and_directories(tmp_path: Path) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("folder/", b"")
        archive.writestr("folder/naïve.txt", b"abc")
    data = b"#!/bin/sh\nexit 0\n" + out.getvalue()  # as a self-extractor starts
    text = _extract(tmp_path, data, "application/zip").text
    assert text == "folder/\nfolder/naïve.txt (3 bytes)"


def test_zip_entry_limit(tmp_path: Path) -> None:
    data = samples.make_zip({f"f{n:03}.txt": b"x" for n in range(50)})
    result = _extract(tmp_path, data, "application/zip", TextLimits(max_archive_entries=10))
    lines = result.text.splitlines()
    assert lines[:10] == [f"f{n:03}.txt (1 bytes)" for n in range(10)]
    assert lines[10:] == ["... and 40 more entries, not listed"]
    assert result.truncated
    assert result.metadata == {"entries": 50, "entries_listed": 10}


def test_encrypted_zip_entries_are_named(tmp_path: Path) -> None:
    data = bytearray(samples.make_zip({"secret.txt": b"abc"}))
    # Set the "encrypted" flag in the central directory entry.
    at = data.rfind(b"PK\x01\x02")
    data[at + 8] |= 0x01
    assert _extract(tmp_path, bytes(data), "application/zip").text == (
        "secret.txt (3 bytes, encrypted)"
    )


@pytest.mark.parametrize(
    ("mode", "content_type"),
    [
        ("w", "application/x-tar"),
        ("w:gz", "application/gzip"),
        ("w:bz2", "application/x-bzip2"),
        ("w:xz", "application/x-xz"),
    ],
)
def test_tar_listings(tmp_path: Path, mode: str, content_type: str) -> None:
    result = _extract(tmp_path, samples.make_tar(MEMBERS, mode), content_type)
    assert (result.text, result.kind, result.truncated) == (LISTING, "tar listing", False)
    assert [p.name for p in tmp_path.iterdir()] == ["archive"]


def test_tar_entry_limit(tmp_path: Path) -> None:
    data = samples.make_tar({f"f{n:03}": b"x" for n in range(30)}, "w:gz")
    result = _extract(tmp_path, data, "application/gzip", TextLimits(max_archive_entries=5))
    assert result.text.splitlines() == [
        *(f"f{n:03} (1 bytes)" for n in range(5)),
        "... and more entries, not listed",
    ]
    assert result.truncated


def test_truncated_zip(tmp_path: Path) -> None:
    data = samples.make_zip(MEMBERS)
    with pytest.raises(ExtractionFailed, match=r"^Not a readable zip archive\.$"):
        _extract(tmp_path, data[: len(data) // 2], "application/zip")


def test_truncated_tar_gz(tmp_path: Path) -> None:
    data = samples.make_tar({"big.bin": bytes(range(256)) * 400, "after.txt": b"x"}, "w:gz")
    with pytest.raises(ExtractionFailed, match=r"^Not a readable tar archive\.$"):
        _extract(tmp_path, data[: len(data) // 2], "application/gzip")


def test_garbage_tar(tmp_path: Path) -> None:
    with pytest.raises(ExtractionFailed, match=r"^Not a readable tar archive\.$"):
        _extract(tmp_path, b"not a tar at all " * 100, "application/x-tar")


def test_compressed_file_without_a_tar_inside(tmp_path: Path) -> None:
    with pytest.raises(NotApplicable):
        _extract(tmp_path, gzip.compress(b"just some text\n" * 100), "application/gzip")
    with pytest.raises(ExtractionFailed, match=r"^Not a readable compressed file\.$"):
        _extract(tmp_path, b"\x1f\x8b\x08\x00garbage" * 10, "application/gzip")


class _Zeros:
    """`size` zero bytes, read without ever holding them all."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return bytes(size)


def test_listing_a_compressed_tar_has_a_deadline(tmp_path: Path) -> None:
    """Reaching the header after a 300 MiB member means decompressing 300 MiB."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1) as compressed:
        with tarfile.open(fileobj=compressed, mode="w|") as archive:
            big = tarfile.TarInfo("zeros.bin")
            big.size = 300 * 1024 * 1024
            archive.addfile(big, cast(IO[bytes], _Zeros(big.size)))
            archive.addfile(tarfile.TarInfo("after.txt"), io.BytesIO(b""))
    limits = TextLimits(timeout_seconds=0.05)
    with pytest.raises(ExtractionFailed, match=r"^Listing the archive took longer than 0.05 s\.$"):
        _extract(tmp_path, out.getvalue(), "application/gzip", limits)
    result = _extract(tmp_path, out.getvalue(), "application/gzip")
    assert result.text == "zeros.bin (314572800 bytes)\nafter.txt (0 bytes)"

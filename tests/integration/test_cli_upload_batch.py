"""`conveyor upload` of several files against the real stack: sent several at once, listed in
the order given, and one file that is refused does not stop the others."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from conveyor_core.settings import Settings
from tests.integration.test_client import cli
from tests.integration.test_limits import limited_tenant

pytestmark = pytest.mark.integration


def random_files(directory: Path, sizes: list[int]) -> list[Path]:
    paths = []
    for index, size in enumerate(sizes):
        path = directory / f"file-{index}.bin"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def test_files_sent_at_once_are_listed_in_the_order_given(
    stack: Settings, key_a: str, tmp_path: Path
) -> None:
    # A multipart file among single PUTs, so the files end in another order than given.
    paths = random_files(tmp_path, [40 * 1024 * 1024, 1000, 2000, 3000, 4000])

    sent = cli(stack, key_a, "upload", *map(str, paths), "--jobs", "3", "--wait", "--json")

    assert sent.returncode == 0, sent.stderr
    files = json.loads(sent.stdout)
    assert [f["filename"] for f in files] == [p.name for p in paths]
    assert [f["sha256"] for f in files] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in paths
    ]
    assert {f["status"] for f in files} == {"ready"}


def test_a_refused_file_does_not_stop_the_others(stack: Settings, tmp_path: Path) -> None:
    _, key = limited_tenant(stack, "--max-files", "2")
    paths = random_files(tmp_path, [1000, 2000, 3000])

    sent = cli(stack, key, "upload", *map(str, paths), "--jobs", "1", "--json")

    assert sent.returncode == 5, sent.stderr
    assert [f["filename"] for f in json.loads(sent.stdout)] == ["file-0.bin", "file-1.bin"]
    assert f"{paths[2]}: Error: file_quota_exceeded" in sent.stderr

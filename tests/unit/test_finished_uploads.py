"""What an interrupted multi-file `conveyor upload` remembers: per command, per file version."""

from __future__ import annotations

import os
from pathlib import Path

from conveyor_client._batch import FinishedUploads

API = "http://api"


def files(tmp_path: Path) -> list[Path]:
    paths = [tmp_path / "a.txt", tmp_path / "b.txt"]
    for path in paths:
        path.write_text(path.name)
    return paths


def remembered(tmp_path: Path, paths: list[Path], **options: object) -> FinishedUploads:
    return FinishedUploads(tmp_path / "state", paths, API, "cvk_key", options or {"public": False})


def test_a_run_of_the_same_command_sees_what_the_earlier_one_sent(tmp_path: Path) -> None:
    a, b = files(tmp_path)
    remembered(tmp_path, [a, b]).record(a, "file-a")

    again = remembered(tmp_path, [b, a])  # the same files, in another order

    assert again.file_id(a) == "file-a"
    assert again.file_id(b) is None


def test_another_command_or_a_changed_file_starts_afresh(tmp_path: Path) -> None:
    a, b = files(tmp_path)
    remembered(tmp_path, [a, b]).record(a, "file-a")

    assert remembered(tmp_path, [a]).file_id(a) is None
    assert remembered(tmp_path, [a, b], public=True).file_id(a) is None
    other_key = FinishedUploads(tmp_path / "state", [a, b], API, "cvk_other", {"public": False})
    assert other_key.file_id(a) is None
    os.utime(a, ns=(1, 1))
    assert remembered(tmp_path, [a, b]).file_id(a) is None


def test_forget_and_clear(tmp_path: Path) -> None:
    a, b = files(tmp_path)
    finished = remembered(tmp_path, [a, b])
    finished.record(a, "file-a")
    finished.record(b, "file-b")

    finished.forget(a)
    assert remembered(tmp_path, [a, b]).file_id(a) is None
    assert remembered(tmp_path, [a, b]).file_id(b) == "file-b"

    finished.clear()
    assert not finished.path.exists()
    assert remembered(tmp_path, [a, b]).file_id(b) is None

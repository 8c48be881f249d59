"""`conveyor upload` of several files against the real stack: sent several at once, listed in
the order given, one file that is refused does not stop the others, and the same command
after Ctrl-C sends only what it had not sent."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor_core.settings import Settings
from tests.integration.test_client import REPO, cli, cli_env, ctrl_c_once_parts_go
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


def test_the_same_command_after_ctrl_c_sends_only_the_rest(
    stack: Settings, key_a: str, tmp_path: Path
) -> None:
    small, big = random_files(tmp_path, [1000, 64 * 1024 * 1024])
    state_dir = tmp_path / "state"
    env = cli_env(stack, key_a, state_dir)
    command = [sys.executable, "-m", "conveyor_client.cli", "upload", str(small), str(big)]
    command += ["--jobs", "1", "--json"]
    # Once the big file's parts are under way.
    first = ctrl_c_once_parts_go([*command, "--concurrency", "1"], env, state_dir)
    assert first.returncode == 130, first.stderr
    [sent] = json.loads(first.stdout)
    assert sent["filename"] == small.name
    assert f"{big}: Paused" in first.stderr

    again = subprocess.run(
        [*command, "--wait"], env=env, cwd=REPO, capture_output=True, text=True, timeout=240
    )

    assert again.returncode == 0, again.stderr
    files = json.loads(again.stdout)
    assert [f["id"] for f in files][0] == sent["id"]  # not made twice
    assert files[1]["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
    assert {f["status"] for f in files} == {"ready"}
    assert list((state_dir / "batches").iterdir()) == []  # the command is done: forgotten

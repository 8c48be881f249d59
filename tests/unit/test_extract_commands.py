"""run_command: output, the failing program's own words, and nothing left running."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from activities.extract import commands
from activities.extract.commands import CommandFailed, CommandTimedOut, run_command
from tests.helpers import process_alive


def _gone(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_returns_stdout_and_runs_in_cwd(tmp_path: Path) -> None:
    assert run_command(["pwd"], 10, lambda: None, cwd=tmp_path).strip() == str(tmp_path)
    assert run_command(["printf", "caf\\303\\251"], 10, lambda: None) == "café"


def test_failure_carries_the_last_non_empty_stderr_line() -> None:
    with pytest.raises(CommandFailed, match="^second$"):
        run_command(["sh", "-c", "echo first >&2; echo second >&2; echo >&2; exit 3"], 10, print)
    with pytest.raises(CommandFailed, match="no error message"):
        run_command(["false"], 10, lambda: None)


def test_env_is_passed() -> None:
    out = run_command(["sh", "-c", "echo $CONVEYOR_X"], 10, lambda: None, {"CONVEYOR_X": "42"})
    assert out == "42\n"


def test_beats_while_the_program_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "POLL_SECONDS", 0.1)
    beats: list[float] = []
    run_command(["sleep", "0.6"], 10, lambda: beats.append(time.monotonic()))
    assert len(beats) >= 3


def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(CommandTimedOut, match="^sh$"):
        run_command(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], 0.5, lambda: None)
    assert time.monotonic() - started < 3
    assert _gone(int(pidfile.read_text()))


def test_an_exception_from_beat_kills_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands, "POLL_SECONDS", 0.1)
    pidfile = tmp_path / "pid"

    def cancelled() -> None:
        raise KeyboardInterrupt  # as a cancellation delivered through the heartbeat

    with pytest.raises(KeyboardInterrupt):
        run_command(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], 30, cancelled)
    assert _gone(int(pidfile.read_text()))


def test_what_the_program_leaves_behind_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    run_command(["sh", "-c", f"sleep 60 >/dev/null 2>&1 & echo $! > {pidfile}"], 10, print)
    assert _gone(int(pidfile.read_text()))


def test_child_runs_in_its_own_session() -> None:
    out = run_command(["sh", "-c", "ps -o sid= -p $$"], 10, lambda: None)
    assert int(out) != os.getsid(0)

"""Running a local program with a deadline, a heartbeat, and nothing left behind.

The child runs in a session (and process group) of its own, so a program that forks
(LibreOffice's soffice starts soffice.bin) is killed whole: on timeout, on any exception
(a cancellation raised by `beat`), and after it ends, whatever it left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from activities.extract.types import Beat

# How often a running child is checked on; `beat` is called this often while it runs.
POLL_SECONDS = 2.0


class CommandFailed(Exception):
    """The program exited non-zero; the message is the last non-empty line it wrote to stderr."""

    def __init__(self, stderr: str) -> None:
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        super().__init__(lines[-1] if lines else "no error message")


class CommandTimedOut(Exception):
    """The program ran past its timeout and was killed; the message is the program."""


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


def run_command(
    args: Sequence[str],
    timeout: float,
    beat: Beat,
    env: dict[str, str] | None = None,
    *,
    cwd: Path | None = None,
) -> str:
    """Runs a program to completion within `timeout` seconds, calling `beat` while it runs.

    Returns its stdout, decoded. Raises CommandFailed on a non-zero exit and CommandTimedOut
    when the deadline passes.
    """
    deadline = time.monotonic() + timeout
    with subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=True,
    ) as proc:
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CommandTimedOut(args[0])
                try:
                    out, err = proc.communicate(timeout=min(remaining, POLL_SECONDS))
                    break
                except subprocess.TimeoutExpired:
                    beat()
        finally:
            # The session's id is the child's pid; its group outlives the child while any
            # member runs, so this also reaches what it forked and left behind.
            kill_group(proc.pid)
    if proc.returncode != 0:
        raise CommandFailed(err.decode("utf-8", "replace"))
    return out.decode("utf-8", "replace")

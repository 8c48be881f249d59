"""Talking to one stack's supervisord: start it, query and command it, shut it down fully."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from supervisor.xmlrpc import SupervisorTransport

from workers.stack.layout import StackLayout

# supervisor.xmlrpc.Faults
_BAD_NAME = 10
_ALREADY_STARTED = 60
_NOT_RUNNING = 70
# States in which a program still has (or is about to have) a process.
_ACTIVE = {"STARTING", "RUNNING", "BACKOFF", "STOPPING"}


class Supervisor:
    def __init__(self, layout: StackLayout) -> None:
        self.layout = layout

    def _rpc(self) -> Any:
        transport = SupervisorTransport(serverurl=f"unix://{self.layout.supervisor_socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def is_running(self) -> bool:
        try:
            state: dict[str, Any] = self._rpc().getState()
        except (OSError, xmlrpc.client.Error):
            return False
        return state.get("statename") == "RUNNING"

    def processes(self) -> list[dict[str, Any]]:
        info: list[dict[str, Any]] = self._rpc().getAllProcessInfo()
        return info

    def states(self) -> dict[str, str]:
        return {p["name"]: p["statename"] for p in self.processes()}

    def state(self, program: str) -> str:
        info: dict[str, Any] = self._rpc().getProcessInfo(program)
        return str(info["statename"])

    def start(self, env: dict[str, str], *, timeout: float = 20.0) -> None:
        """Start supervisord (it daemonizes) with `env` as the environment of every program."""
        subprocess.run(
            [
                sys.executable,
                "-m",
                "supervisor.supervisord",
                "-c",
                str(self.layout.supervisord_conf),
            ],
            env=env,
            cwd=self.layout.state,
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
        deadline = time.monotonic() + timeout
        while not self.is_running():
            if time.monotonic() > deadline:
                raise TimeoutError(f"supervisord did not answer on {self.layout.supervisor_socket}")
            time.sleep(0.05)

    def start_program(self, program: str) -> None:
        try:
            self._rpc().startProcess(program, False)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != _ALREADY_STARTED:
                raise

    def ctl(self, *args: str) -> str:
        """Run supervisorctl against this stack; returns what it printed (stdout and stderr)."""
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "supervisor.supervisorctl",
                "-c",
                str(self.layout.supervisord_conf),
                *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return result.stdout

    def stop_programs(self, programs: Sequence[str], deadline: float) -> None:
        """Stop `programs` all at once (supervisord alone stops one group after another)."""
        rpc = self._rpc()
        for program in programs:
            try:
                rpc.stopProcess(program, False)
            except xmlrpc.client.Fault as fault:
                if fault.faultCode not in (_NOT_RUNNING, _BAD_NAME):
                    raise
        while time.monotonic() < deadline:
            states = self.states()
            if all(states.get(p, "STOPPED") not in _ACTIVE for p in programs):
                return
            time.sleep(0.05)

    def shutdown(self, stages: Sequence[Sequence[str]] = (), *, timeout: float = 60.0) -> None:
        """Stop the programs stage by stage, then supervisord; returns once none is left."""
        if not self.is_running():
            return
        rpc = self._rpc()
        supervisord_pid = int(rpc.getPID())
        # Snapshot now: postgres backends setsid() into groups of their own, so neither
        # supervisor's killasgroup nor a process-group scan would find them afterwards.
        ours = _descendants(supervisord_pid)
        deadline = time.monotonic() + timeout
        for stage in stages:
            self.stop_programs(stage, deadline)
        try:
            rpc.shutdown()
        except (OSError, xmlrpc.client.Error):
            pass  # it may close the socket before answering
        while _alive(supervisord_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = _still_running(ours)
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = _still_running(ours)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if _alive(supervisord_pid):
            raise TimeoutError(f"supervisord (pid {supervisord_pid}) did not exit")


class _Proc(NamedTuple):
    ppid: int
    pgid: int
    start_time: int


def _processes() -> dict[int, _Proc]:
    """Every live process (zombies left out) from /proc."""
    table: dict[int, _Proc] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after the last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] not in ("Z", "X"):
            table[int(entry)] = _Proc(int(fields[1]), int(fields[2]), int(fields[19]))
    return table


def _descendants(root: int) -> dict[int, int]:
    """pid -> start time of `root`'s descendants and of everyone in their process groups."""
    table = _processes()
    found: set[int] = set()
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, proc in table.items() if proc.ppid == parent]
        found.update(children)
        frontier.extend(children)
    groups = {table[pid].pgid for pid in found} - {table[root].pgid if root in table else -1}
    found.update(pid for pid, proc in table.items() if proc.pgid in groups)
    return {pid: table[pid].start_time for pid in found}


def _still_running(snapshot: dict[int, int]) -> list[int]:
    table = _processes()
    # A recycled pid has another start time and is not ours.
    return [
        pid for pid, start in snapshot.items() if pid in table and table[pid].start_time == start
    ]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"

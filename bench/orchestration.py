"""What a small file costs the machine, per process, against a running stack (`make up`).

Uploads N small text files (declare, PUT, GET held until ready; `--in-flight` at a time) and
reads, before and after, the CPU time of every program of the stack with all its child
processes (Postgres backends, nginx workers): utime + stime of each live process, plus
cutime + cstime (children that ended and were reaped). The same programs are read over an
idle spell of the same length first, so what they burn doing nothing is subtracted. Prints
CPU ms per file per program and in all, files/s, and PUT returned -> ready p50/p99.

    .venv/bin/python -m bench.orchestration [--files 300] [--in-flight 8] [--size 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

from conveyor_core.settings import Settings, get_settings
from workers.cli import create_key
from workers.stack import manage

T = TypeVar("T")
TICK = os.sysconf("SC_CLK_TCK")
POLL_SECONDS = 0.0  # follow each file with ?wait= (one held GET), not by polling


def program_pids(settings: Settings) -> dict[str, int]:
    status = manage.supervisorctl(settings, "status")
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\S+)\s+RUNNING\s+pid (\d+)", status, re.M)}


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds incl. reaped children) of a process; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(n) for n in fields[11:15])
    return ppid, (utime + stime + cutime + cstime) / TICK


def tree_cpu(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each program's process tree."""
    processes: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := _stat(int(entry.name))) is not None:
            processes[int(entry.name)] = found
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in processes.items():
        children.setdefault(ppid, []).append(pid)
    totals: dict[str, float] = {}
    for name, root in roots.items():
        total, stack = 0.0, [root]
        while stack:
            pid = stack.pop()
            if pid in processes:
                total += processes[pid][1]
                stack.extend(children.get(pid, []))
        totals[name] = total
    return totals


def cpu_ms_per_item(
    roots: dict[str, int], items: int, work: Callable[[], T], idle_cap: float = 30.0
) -> tuple[T, float, dict[str, float]]:
    """Runs `work` (`items` of them) and returns its result, its wall seconds and each
    program's CPU ms per item: its process tree's CPU over the run, less what the same tree
    burns idle over as long (read right after, for at most `idle_cap` s, scaled up)."""
    before = tree_cpu(roots)
    started = time.perf_counter()
    result = work()
    wall = time.perf_counter() - started
    after = tree_cpu(roots)
    idle_before = tree_cpu(roots)
    time.sleep(min(wall, idle_cap))
    idle_after = tree_cpu(roots)
    idle_share = wall / min(wall, idle_cap)
    per_item: dict[str, float] = {}
    for name in sorted(roots):
        busy = after[name] - before[name]
        idle = (idle_after[name] - idle_before[name]) * idle_share
        per_item[name] = round(max(0.0, busy - idle) / items * 1000, 1)
    return result, wall, per_item


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def _one(
    api: httpx.AsyncClient,
    store: httpx.AsyncClient,
    size: int,
    poll: float,
    put_to_ready: list[float],
) -> None:
    content = os.urandom(size)
    created = await api.post(
        "/v1/uploads",
        json={
            "filename": "small.txt",
            "size": size,
            "content_type": "text/plain",
            "sha256": hashlib.sha256(content).hexdigest(),
        },
    )
    created.raise_for_status()
    upload = created.json()
    sent = await store.put(upload["url"], content=content, headers=upload["headers"])
    sent.raise_for_status()
    landed = time.perf_counter()
    # poll 0: each GET is held until the file ends (?wait=); else a plain GET every `poll` s.
    params = {"wait": 30} if poll <= 0 else None
    while True:
        state = (await api.get(f"/v1/files/{upload['file_id']}", params=params)).json()
        if state["status"] not in ("awaiting_upload", "processing"):
            break
        if poll > 0:
            await asyncio.sleep(poll)
    assert state["status"] == "ready", state
    put_to_ready.append((time.perf_counter() - landed) * 1000)


async def _batch(
    settings: Settings, key: str, files: int, in_flight: int, size: int, poll: float
) -> list[float]:
    put_to_ready: list[float] = []
    slots = asyncio.Semaphore(in_flight)
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx.AsyncClient(base_url=settings.api_url, headers=headers, timeout=60) as api,
        httpx.AsyncClient(timeout=60) as store,
    ):

        async def one() -> None:
            async with slots:
                await _one(api, store, size, poll, put_to_ready)

        await asyncio.gather(*(one() for _ in range(files)))
    return put_to_ready


def run(files: int, in_flight: int, size: int, poll: float = POLL_SECONDS) -> dict[str, object]:
    settings = get_settings()
    key = create_key(settings, "bench-orchestration")
    roots = program_pids(settings)
    asyncio.run(_batch(settings, key, 20, in_flight, size, poll))  # warm: connections, caches

    put_to_ready, wall, per_file = cpu_ms_per_item(
        roots, files, lambda: asyncio.run(_batch(settings, key, files, in_flight, size, poll))
    )
    return {
        "files": files,
        "in_flight": in_flight,
        "size": size,
        "poll_seconds": poll,
        "files_per_s": round(files / wall, 1),
        "put_to_ready_ms_p50": round(statistics.median(put_to_ready), 1),
        "put_to_ready_ms_p99": round(percentile(put_to_ready, 0.99), 1),
        "cpu_ms_per_file": per_file,
        "cpu_ms_per_file_total": round(sum(per_file.values()), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument(
        "--poll",
        type=float,
        default=POLL_SECONDS,
        help="seconds between a file's GETs; 0 holds one GET until it ends (?wait=)",
    )
    args = parser.parse_args()
    print(json.dumps(run(args.files, args.in_flight, args.size, args.poll), indent=2))


if __name__ == "__main__":
    main()

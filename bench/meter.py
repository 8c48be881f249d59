"""Where an upload's CPU goes: the client's, the object store's, and how busy the machine was.

Standard library only: the boto3 baseline imports it in a process of its own, one in which
awscrt (and so the Conveyor SDK) must not be importable.
"""

from __future__ import annotations

import dataclasses
import time
from types import TracebackType


def process_cpu_seconds(pid: int) -> float:
    """CPU time of a whole process, every thread it ever ran included, in nanosecond
    resolution: the kernel's per-process CPU clock (clock_getcpuclockid(pid), whose id the
    C library derives as below). Summing /proc/PID/task/*/schedstat missed threads that had
    ended (a timer thread per request), and /proc/PID/stat counts in 10 ms ticks."""
    return time.clock_gettime((~pid << 3) | 2)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of every CPU since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(n) for n in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


@dataclasses.dataclass(frozen=True)
class Sample:
    seconds: float  # wall time
    client_cpu: float  # CPU seconds of the uploading process, all its threads
    store_cpu: float  # CPU seconds the object store spent meanwhile
    machine_busy: float  # share of all the machine's CPUs busy meanwhile, 0 to 1


class Meter:
    """Measures what its `with` block costs: `with Meter(store_pid) as meter: ...`, then
    `meter.sample`. The client is the process the block runs in."""

    def __init__(self, store_pid: int) -> None:
        self._store_pid = store_pid
        self.sample: Sample | None = None

    def __enter__(self) -> Meter:
        self._wall = time.perf_counter()
        self._client = time.process_time()
        self._store = process_cpu_seconds(self._store_pid)
        self._ticks = machine_ticks()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        busy, total = machine_ticks()
        self.sample = Sample(
            seconds=time.perf_counter() - self._wall,
            client_cpu=time.process_time() - self._client,
            store_cpu=process_cpu_seconds(self._store_pid) - self._store,
            machine_busy=(busy - self._ticks[0]) / max(1, total - self._ticks[1]),
        )

"""Heartbeats: a worker that dies during an activity is noticed within the activity's
heartbeat timeout, not its start-to-close timeout.

`beat` is what a synchronous activity calls as it goes; `beating` heartbeats while one
blocking call runs (a server-side copy).
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from temporalio import activity

BEAT_EVERY_SECONDS = 5.0
# An activity's first seconds send no heartbeat: the SDK sends an activity's first one at
# once, and the server writes each to the workflow's state, as dear as a history event. A
# short activity (most, for small files) then sends none, and a long one starts beating
# after this, well within its timeout (the server counts it from the activity's start).
QUIET_SECONDS = 3.0
# (the activity attempt's task token, when it first called beat)
_FIRST_CALL: contextvars.ContextVar[tuple[bytes, float] | None] = contextvars.ContextVar(
    "conveyor_first_heartbeat_call", default=None
)


def beat(*details: Any) -> None:
    """activity.heartbeat, except in the activity's first QUIET_SECONDS (at most a quarter
    of its heartbeat timeout), counted from its first call. The SDK runs each activity in a
    context of its own; the task token tells attempts apart in a context that is not."""
    now = time.monotonic()
    info = activity.info()
    first = _FIRST_CALL.get()
    if first is None or first[0] != info.task_token:
        first = (info.task_token, now)
        _FIRST_CALL.set(first)
    timeout = info.heartbeat_timeout
    quiet = min(QUIET_SECONDS, timeout.total_seconds() / 4) if timeout else QUIET_SECONDS
    if now - first[1] >= quiet:
        activity.heartbeat(*details)


@contextmanager
def beating(every: float = BEAT_EVERY_SECONDS) -> Iterator[None]:
    """Heartbeats every `every` seconds from a helper thread until the block ends."""
    done = threading.Event()
    context = contextvars.copy_context()  # the activity's, so the helper's beats are its own

    def beat() -> None:
        while not done.wait(every):
            context.run(activity.heartbeat)

    helper = threading.Thread(target=beat, name="activity-heartbeat", daemon=True)
    helper.start()
    try:
        yield
    finally:
        done.set()
        helper.join()

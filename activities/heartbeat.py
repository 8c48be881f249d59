"""Heartbeats while one blocking call runs (a server-side copy): a worker that dies during it
is noticed within the activity's heartbeat timeout, not its start-to-close timeout."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import activity

BEAT_EVERY_SECONDS = 5.0


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

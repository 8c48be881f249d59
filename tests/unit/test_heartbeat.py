"""A blocking call inside `beating()` still heartbeats, so a dead worker is noticed soon."""

from __future__ import annotations

import time

from temporalio.testing import ActivityEnvironment

from activities.heartbeat import beating


def test_beating_heartbeats_while_a_blocking_call_runs() -> None:
    beats: list[tuple[object, ...]] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)

    def blocking_copy() -> int:
        with beating(every=0.05):
            time.sleep(0.5)  # stands for a server-side copy that gives no progress
        return len(beats)

    during = env.run(blocking_copy)
    time.sleep(0.2)

    assert during >= 5
    assert len(beats) == during  # the helper stops with the block

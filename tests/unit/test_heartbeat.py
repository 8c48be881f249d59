"""A blocking call inside `beating()` still heartbeats, so a dead worker is noticed soon; `beat`
sends none in an activity's first seconds."""

from __future__ import annotations

import contextvars
import dataclasses
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities import heartbeat
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


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _activity_env(beats: list[tuple[object, ...]], heartbeat_timeout: float) -> Any:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info,
        heartbeat_timeout=timedelta(seconds=heartbeat_timeout),
        task_token=uuid.uuid4().bytes,  # each attempt has its own
    )
    env.on_heartbeat = lambda *details: beats.append(details)
    return env


def _run_as_the_sdk_does(env: Any, fn: Callable[[], None]) -> None:
    # The SDK runs each synchronous activity in a copy of the worker's context.
    contextvars.copy_context().run(env.run, fn)


def test_a_short_activity_sends_no_heartbeat_and_a_long_one_beats_after_its_first_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr(heartbeat.time, "monotonic", clock)
    beats: list[tuple[object, ...]] = []
    env = _activity_env(beats, heartbeat_timeout=30)

    def steps(*at: float) -> Callable[[], None]:
        def run() -> None:
            start = clock.now
            for offset in at:
                clock.now = start + offset
                heartbeat.beat(offset)

        return run

    _run_as_the_sdk_does(env, steps(0, 1, 2.9))
    assert beats == []  # all within QUIET_SECONDS of its first call
    _run_as_the_sdk_does(env, steps(0, 1, 3, 10))
    assert beats == [(3,), (10,)]  # a new activity counts from its own first call
    assert heartbeat.QUIET_SECONDS == 3


def test_the_quiet_start_is_at_most_a_quarter_of_the_heartbeat_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr(heartbeat.time, "monotonic", clock)
    beats: list[tuple[object, ...]] = []
    env = _activity_env(beats, heartbeat_timeout=2)

    def run() -> None:
        heartbeat.beat("first")
        clock.now += 0.4
        heartbeat.beat("early")
        clock.now += 0.1
        heartbeat.beat("due")

    _run_as_the_sdk_does(env, run)
    assert beats == [("due",)]


def test_an_attempt_counts_from_its_own_first_call_in_a_context_an_earlier_one_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr(heartbeat.time, "monotonic", clock)
    beats: list[tuple[object, ...]] = []
    earlier, later = _activity_env(beats, 30), _activity_env(beats, 30)
    context = contextvars.copy_context()
    context.run(earlier.run, lambda: heartbeat.beat("earlier"))
    clock.now += 60
    context.run(later.run, lambda: heartbeat.beat("later"))  # its first call: quiet
    assert beats == []

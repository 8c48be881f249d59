"""The API's rate limiter counts a moving window without starting a thread per request."""

from __future__ import annotations

import time

import pytest

import api.limits
from api.errors import TooManyRequests
from api.limits import RateLimiter


def no_timer(*_: object, **__: object) -> None:
    raise AssertionError("the storage started a Timer thread")


def test_a_full_window_refuses_then_frees_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api.limits, "EXPIRY_INTERVAL_SECONDS", 0.0)
    limiter = RateLimiter()
    monkeypatch.setattr("limits.storage.memory.threading.Timer", no_timer)

    limiter.hit("key", "2/second")
    limiter.hit("key", "2/second")
    with pytest.raises(TooManyRequests):
        limiter.hit("key", "2/second")
    limiter.hit("other key", "2/second")  # each key has its own window

    time.sleep(1.05)
    limiter.hit("key", "2/second")


def test_expired_entries_are_dropped_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api.limits, "EXPIRY_INTERVAL_SECONDS", 0.0)
    limiter = RateLimiter()
    monkeypatch.setattr("limits.storage.memory.threading.Timer", no_timer)
    for _ in range(50):
        limiter.hit("key", "100/second")
    assert sum(len(entries) for entries in limiter.storage.events.values()) == 50

    time.sleep(1.05)
    limiter.hit("another key", "100/second")  # a hit on any key expires every key's old ones

    assert sum(len(entries) for entries in limiter.storage.events.values()) == 1

"""The client's bandwidth limit (pure logic, real clock: the bounds hold on a busy machine,
which only ever makes things slower)."""

from __future__ import annotations

import threading
import time

import pytest

from conveyor_client import Throttle

KIB = 1024


def test_throttle_paces_bytes_to_its_rate() -> None:
    throttle = Throttle(1024 * KIB)
    started = time.monotonic()
    for _ in range(5):
        assert throttle.take(64 * KIB)
    # The first chunk goes at once; the four after it wait 1/16 s each.
    assert time.monotonic() - started >= 4 * 64 / 1024 - 0.01


def test_threads_sharing_a_throttle_keep_to_it_together() -> None:
    throttle = Throttle(1024 * KIB)

    def send() -> None:
        for _ in range(3):
            throttle.take(64 * KIB)

    started = time.monotonic()
    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started >= 11 * 64 / 1024 - 0.01  # 12 chunks, one slot each


def test_a_stop_ends_the_wait_at_once() -> None:
    throttle = Throttle(1 * KIB)
    assert throttle.take(1 * KIB)  # the next KiB may go a second from now
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    started = time.monotonic()
    assert not throttle.take(1 * KIB, stop)
    assert time.monotonic() - started < 0.9


@pytest.mark.parametrize("rate", [0, -1])
def test_a_throttle_needs_a_positive_rate(rate: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Throttle(rate)

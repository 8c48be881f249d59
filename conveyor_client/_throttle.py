"""A bandwidth limit shared by every thread that sends or receives through it."""

from __future__ import annotations

import threading
import time


class Throttle:
    """Paces bytes to at most `bytes_per_second`, across all the threads (a client's parts,
    a command's files) that share it. Each chunk is given the next free slot of time, so no
    credit builds up while the link is idle and the pace holds from the first byte.

    Args:
        bytes_per_second: The limit; positive.
    """

    def __init__(self, bytes_per_second: float) -> None:
        if not bytes_per_second > 0:
            raise ValueError("bytes_per_second must be positive")
        self.bytes_per_second = float(bytes_per_second)
        self._lock = threading.Lock()
        self._free_at = time.monotonic()

    def take(self, size: int, stop: threading.Event | None = None) -> bool:
        """Waits until `size` bytes may go; False, at once, if `stop` is set meanwhile."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._free_at)
            self._free_at = start + size / self.bytes_per_second
        delay = start - now
        if delay <= 0:
            return not (stop is not None and stop.is_set())
        if stop is None:
            time.sleep(delay)
            return True
        return not stop.wait(delay)

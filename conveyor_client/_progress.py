"""Byte counting shared by upload threads, reported through the user's callback."""

from __future__ import annotations

import threading
from collections.abc import Callable

ProgressCallback = Callable[[int, int], None]
"""Called as `callback(bytes_done, bytes_total)`; never from two threads at once."""


class ProgressCounter:
    """Bytes done of a total; `add` may go negative when a failed attempt is rolled back."""

    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total = total
        self.done = 0
        self._callback = callback
        self._lock = threading.Lock()

    def add(self, delta: int) -> None:
        """Counts `delta` more bytes (negative to undo) and reports the new figure."""
        with self._lock:
            self.done = max(0, min(self.total, self.done + delta))
            if self._callback is not None:
                self._callback(self.done, self.total)

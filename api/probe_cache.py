"""One probe shared by everyone who asks within a short while, and by everyone who asks while
it runs: a flood of /readyz costs the dependencies one probe per `max_age`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedProbe(Generic[T]):
    """Runs `probe` at most once per `max_age` seconds. Used from one event loop."""

    def __init__(
        self,
        probe: Callable[[], Awaitable[T]],
        max_age: float,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._max_age = max_age
        self._timer = timer
        self._result: tuple[float, T] | None = None
        self._running: asyncio.Task[T] | None = None

    async def get(self) -> T:
        """The last result while it is fresh, else the one probe in flight (started if none)."""
        if self._result is not None and self._timer() - self._result[0] < self._max_age:
            return self._result[1]
        if self._running is None:
            self._running = asyncio.create_task(self._run())
        # Shielded: a caller that goes away does not cancel the probe the others wait for.
        return await asyncio.shield(self._running)

    async def _run(self) -> T:
        try:
            result = await self._probe()
            # Aged from when the probe ended, so a slow probe is not stale on arrival.
            self._result = (self._timer(), result)
            return result
        finally:
            self._running = None

"""Valid API keys' tenancy, kept in memory until Postgres says a key or a tenant changed.

A trigger sends a NOTIFY on `conveyor_keys` for every change to `api_key` or `tenant`
(migration 20261126_key_notify); the API listens on its own connection and drops the whole
cache on each one, so a revoked key or a changed limit takes effect at once. The cache is
used only while that connection is up: a request made while it is down looks the key up.
`max_age` bounds what a silently dead connection (no notification, no error yet) can leave
stale; TCP keepalives find such a connection within about half a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import psycopg
from cachetools import TTLCache
from psycopg.conninfo import make_conninfo
from psycopg.pq import ConnStatus
from psycopg.pq.abc import PGconn

from observability.metrics import KEY_CACHE_LISTENING

log = logging.getLogger(__name__)

CHANNEL = "conveyor_keys"
RECONNECT_SECONDS = 2.0
# libpq's keepalive settings: a peer gone without a word is noticed after 10 + 3 * 5 s.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "connect_timeout": 5,
}

T = TypeVar("T")


class KeyCache(Generic[T]):
    """Key hash → tenancy. Used from the event loop only (requests and the listener)."""

    def __init__(
        self, max_age: float, maxsize: int = 10_000, timer: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: TTLCache[str, T] = TTLCache(maxsize=maxsize, ttl=max_age, timer=timer)
        self._generation = 0
        self.listening = False

    @property
    def generation(self) -> int:
        """Taken before a lookup and handed to `put`: a change notified while the lookup
        ran makes its answer stale, and `put` then drops it."""
        return self._generation

    def get(self, key_hash: str) -> T | None:
        return self._entries.get(key_hash) if self.listening else None

    def put(self, key_hash: str, tenancy: T, generation: int) -> None:
        if self.listening and generation == self._generation:
            self._entries[key_hash] = tenancy

    def invalidate(self) -> None:
        self._generation += 1
        self._entries.clear()

    def set_listening(self, listening: bool) -> None:
        # Whatever was kept before a (re)connection may have missed a notification.
        self.invalidate()
        self.listening = listening
        KEY_CACHE_LISTENING.set(1 if listening else 0)


async def listen_for_key_changes(dsn: str, cache: KeyCache[T]) -> None:
    """Runs until cancelled: keeps a LISTEN connection, invalidating `cache` on every
    notification, and reconnects after a failure (the cache stays off meanwhile)."""
    conninfo = make_conninfo(dsn, **KEEPALIVES)
    failing = False
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True
            ) as connection:
                await connection.execute(f"LISTEN {CHANNEL}")
                cache.set_listening(True)
                if failing:
                    log.info("listening for key changes again; the key cache is back on")
                failing = False
                await _invalidate_on_notifications(connection.pgconn, cache)
        except Exception as e:  # whatever it was, the cache is off until a reconnect
            if not failing:
                log.warning(
                    "key change listener lost (%s); keys are looked up each time",
                    e,
                    exc_info=not isinstance(e, psycopg.Error | OSError),
                )
            failing = True
        finally:
            cache.set_listening(False)
        await asyncio.sleep(RECONNECT_SECONDS)


async def _invalidate_on_notifications(pgconn: PGconn, cache: KeyCache[T]) -> None:
    """Waits on the socket itself: psycopg's `notifies()` polls ten times a second, which
    was 1.9 ms of CPU per idle second here. Returns only by raising (connection lost)."""
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    socket = pgconn.socket
    loop.add_reader(socket, readable.set)
    try:
        while True:
            await readable.wait()
            readable.clear()
            pgconn.consume_input()  # raises OperationalError once the server is gone
            if pgconn.status != ConnStatus.OK:
                raise psycopg.OperationalError("the key change connection went bad")
            heard = False
            while pgconn.notifies() is not None:
                heard = True
            if heard:
                cache.invalidate()
    finally:
        loop.remove_reader(socket)

"""The API process itself: a Date header that is current after idling, and a prompt stop
(its main loop sleeps until a signal wakes it, instead of ticking ten times a second)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from conveyor_core.settings import Settings
from tests.helpers import assert_eventually
from workers.stack import manage


async def test_the_date_header_is_current_after_idling(api: httpx.AsyncClient) -> None:
    for pause in (0.0, 1.6, 2.3):
        await asyncio.sleep(pause)
        response = await api.get("/healthz")
        assert response.status_code == 200
        assert len(response.headers.get_list("date")) == 1
        sent = parsedate_to_datetime(response.headers["date"])
        assert abs((datetime.now(UTC) - sent).total_seconds()) < 1.5, response.headers["date"]


async def test_the_api_stops_at_once_on_a_signal_and_starts_again(
    stack: Settings, api: httpx.AsyncClient
) -> None:
    await asyncio.sleep(1.5)  # idle: the main loop is asleep when the stop comes
    started = time.monotonic()
    assert "stopped" in manage.supervisorctl(stack, "stop", "api")
    assert time.monotonic() - started < 5  # supervisord waits up to 10 s, then kills
    manage.supervisorctl(stack, "start", "api")

    async def healthy() -> None:
        try:
            response = await api.get("/healthz")
        except httpx.TransportError as e:  # not listening yet
            raise AssertionError(str(e)) from e
        assert response.status_code == 200

    await assert_eventually(healthy, timeout=30)

"""The API process: uvicorn serving api.app on the configured port."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from email.utils import formatdate
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.app import begin_draining, create_app
from conveyor_core.settings import get_settings
from observability.logging import configure_logging
from observability.metrics import serve_metrics
from observability.tracing import configure_tracing

# The main loop still looks at the exit flag this often, should a stop come other than by
# a signal; a signal wakes it at once.
SAFETY_TICK_SECONDS = 30.0


class DateHeader:
    """Stamps the Date header on each response. uvicorn's own Date header is refreshed by
    a tick that wakes the process ten times a second; this one costs nothing while idle."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._second = -1
        self._value = b""

    def _now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second, self._value = second, formatdate(second, usegmt=True).encode()
        return self._value

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"date", self._now())]
            await send(message)

        await self.app(scope, receive, send_dated)


class Server(uvicorn.Server):
    """uvicorn's main loop wakes ten times a second to refresh its Date header and to look
    for a shutdown request. Where wake-ups are dear (this VM: about 0.25 ms of CPU each),
    that was most of what the idle API burns, and it counted against every upload. Here the
    Date header comes from `DateHeader`, and the loop sleeps until a signal asks it to stop."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None] = lambda: None) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exit_requested: asyncio.Event | None = None
        self._on_exit = on_exit

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._exit_requested = asyncio.Event()
        while not await self.on_tick(0):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_requested.wait(), SAFETY_TICK_SECONDS)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # A signal handler runs between bytecodes of the main thread while the loop may sit
        # in epoll: only the thread-safe call writes to the loop's wake-up pipe.
        loop, event = self._loop, self._exit_requested
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(event.set)
                loop.call_soon_threadsafe(self._on_exit)


if __name__ == "__main__":
    settings = get_settings()
    configure_logging("api", settings.log_level)
    configure_tracing(settings, "api")
    # Metrics on a port of their own: the API's port, which tenants reach, serves none.
    serve_metrics(settings.api_metrics_port, settings.host)
    app = create_app(settings)
    config = uvicorn.Config(
        DateHeader(app),
        host=settings.host,
        port=settings.api_port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's records go through the JSON handler too
        proxy_headers=False,
        date_header=False,  # DateHeader stamps it
        # Over it uvicorn answers 503 "Service Unavailable" (text/plain, Connection: close)
        # without calling the app: clients retry a 503 as they do a dependency_unavailable.
        limit_concurrency=settings.api_limit_concurrency,
    )
    Server(config, on_exit=lambda: begin_draining(app)).run()

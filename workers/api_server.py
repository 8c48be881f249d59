"""The API process: uvicorn serving api.app on the configured port."""

from __future__ import annotations

import asyncio

import uvicorn

from api.app import create_app
from conveyor_core.settings import get_settings
from observability.logging import configure_logging
from observability.tracing import configure_tracing


class Server(uvicorn.Server):
    """uvicorn wakes ten times a second to refresh its Date header and look for a shutdown
    request; where syscalls are dear (this sandbox) that alone was 1.2 ms of CPU per idle
    second, more than an upload's requests over its duration. Once a second does both."""

    async def main_loop(self) -> None:
        ticks = 0
        while not await self.on_tick(ticks):
            await asyncio.sleep(1.0)
            ticks = (ticks + 10) % 864_000  # on_tick refreshes the Date header on multiples of 10


if __name__ == "__main__":
    settings = get_settings()
    configure_logging("api", settings.log_level)
    configure_tracing(settings, "api")
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.api_port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's records go through the JSON handler too
        proxy_headers=False,
    )
    Server(config).run()

"""The API process: uvicorn serving api.app on the configured port."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from conveyor_core.settings import get_settings
from observability.logging import configure_logging
from observability.tracing import configure_tracing

if __name__ == "__main__":
    settings = get_settings()
    configure_logging("api", settings.log_level)
    configure_tracing(settings, "api")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.api_port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's records go through the JSON handler too
        proxy_headers=False,
    )

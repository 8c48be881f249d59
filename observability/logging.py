"""Process-wide logging setup, one line per record, tagged with the service name."""

from __future__ import annotations

import logging


def configure_logging(service: str, level: str = "info") -> None:
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s",
        force=True,
    )

"""Process-wide logging: one JSON object a line, carrying the service, the active trace and
span, and, inside a workflow or an activity, its workflow id and file id."""

from __future__ import annotations

import logging

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter
from temporalio import activity, workflow

from observability.redaction import RedactTokens

INGEST_PREFIX = "ingest-"


class CorrelationFilter(logging.Filter):
    """Adds trace_id, span_id, workflow_id and file_id to every record it can."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self._service
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = f"{context.trace_id:032x}"
            record.span_id = f"{context.span_id:016x}"
        workflow_id = _workflow_id()
        if workflow_id is not None:
            record.workflow_id = workflow_id
            if workflow_id.startswith(INGEST_PREFIX):
                record.file_id = workflow_id.removeprefix(INGEST_PREFIX)
        return True


def _workflow_id() -> str | None:
    if activity.in_activity():
        return activity.info().workflow_id
    if workflow.in_workflow():
        return workflow.info().workflow_id
    return None


def configure_logging(service: str, level: str = "info") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(CorrelationFilter(service))
    handler.addFilter(RedactTokens())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)

"""Prometheus metrics of Conveyor's own processes (the Temporal SDK exports its own too)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

UPLOADS_CREATED = Counter(
    "conveyor_uploads_created", "Uploads declared through the API, by method.", ["method"]
)
BYTES_DECLARED = Counter("conveyor_upload_bytes_declared", "Bytes declared by new uploads.")
API_ERRORS = Counter("conveyor_api_errors", "Error answers of the API, by code.", ["code"])
KEY_CACHE_LISTENING = Gauge(
    "conveyor_api_key_cache_listening",
    "1 while the API hears key and tenant changes (and so caches keys), else 0.",
)
READINESS_PROBES = Counter(
    "conveyor_api_readiness_probes",
    "Dependency probes run for /readyz (one answers every /readyz for readyz_cache_seconds).",
)
ACTIVITY_SECONDS = Histogram(
    "conveyor_activity_duration_seconds",
    "Duration of each activity (stage) run, by activity and outcome.",
    ["activity", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
ACTIVITY_FAILURES = Counter(
    "conveyor_activity_failures",
    "Failed activity runs, by activity and error type.",
    ["activity", "error_type"],
)
FILES_FINISHED = Counter("conveyor_files_finished", "Files that ended, by status.", ["status"])
BYTES_VERIFIED = Counter("conveyor_bytes_verified", "Bytes hashed by the verify stage.")
RELAY_EVENTS = Counter("conveyor_relay_events", "Store events handled, by outcome.", ["outcome"])
STRAY_OBJECTS = Counter(
    "conveyor_stray_objects_deleted",
    "Objects deleted from incoming/ keys that take no more bytes (the upload was sealed, "
    "cancelled, expired, failed or deleted), by who found them: the relay on their event "
    "(tampering) or the sweeper.",
    ["found_by"],
)
MULTIPART_ABORTED = Counter(
    "conveyor_sweeper_multipart_aborted",
    "Multipart uploads under incoming/ keys that take no more bytes, aborted by the sweeper.",
)
DELETIONS_RESTARTED = Counter(
    "conveyor_sweeper_deletions_restarted",
    "Deletions that did not finish (a blob left releasing, or never released), started again "
    "by the sweeper.",
)
RELAY_REDELIVERIES = Counter(
    "conveyor_relay_redeliveries", "Messages JetStream delivered more than once."
)
RELAY_LAG = Histogram(
    "conveyor_relay_lag_seconds",
    "From the object's creation (event time) to its signal.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120, 600),
)


def serve_metrics(port: int, host: str) -> None:
    """Serves /metrics for this process on its own port (the API, workers and the relay)."""
    start_http_server(port, addr=host)


def observe_activity(name: str, seconds: float, error_type: str | None = None) -> None:
    """One activity run (or one stage run inside a batch), under its activity's name."""
    if error_type is not None:
        ACTIVITY_FAILURES.labels(name, error_type).inc()
    ACTIVITY_SECONDS.labels(name, "failed" if error_type else "succeeded").observe(seconds)


class ActivityMetricsInterceptor(Interceptor):
    """Times every activity and counts its failures by error type."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TimedActivity(next)


class _TimedActivity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        name = activity.info().activity_type
        started = time.perf_counter()
        try:
            result = await super().execute_activity(input)
        except BaseException as e:
            error_type = getattr(e, "type", None) or type(e).__name__
            observe_activity(name, time.perf_counter() - started, error_type)
            raise
        observe_activity(name, time.perf_counter() - started)
        return result

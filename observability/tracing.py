"""OpenTelemetry tracing for every process: one trace from the API request through the
workflow to each activity (Temporal's tracing interceptor carries the context)."""

from __future__ import annotations

from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from conveyor_core.settings import Settings
from observability.span_store import JsonLinesSpanExporter

# Local spans are written within two seconds, so `conveyor trace` sees a file at once; a
# shorter delay is an idle wake-up that shows in the API's idle CPU.
LOCAL_EXPORT_DELAY_MS = 2000


def configure_tracing(settings: Settings, service: str) -> TracerProvider:
    """Installs the process's tracer provider: OTLP when configured, else the local store."""
    exporter: SpanExporter
    if settings.otlp_traces_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otlp_traces_endpoint)
        processor = BatchSpanProcessor(exporter)
    else:
        exporter = JsonLinesSpanExporter(settings.state_path / "traces" / f"{service}.jsonl")
        processor = BatchSpanProcessor(exporter, schedule_delay_millis=LOCAL_EXPORT_DELAY_MS)
    provider = TracerProvider(resource=Resource.create({"service.name": f"conveyor-{service}"}))
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider


def tag_current_span(**attributes: str) -> None:
    """Adds `conveyor.<name>` attributes (file_id, tenant_id, ...) to the active span."""
    span = trace.get_current_span()
    for name, value in attributes.items():
        span.set_attribute(f"conveyor.{name}", value)


_W3C = TraceContextTextMapPropagator()


def current_traceparent() -> str | None:
    """The active span as a W3C `traceparent`, to be kept where another process finds it."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent")


def context_of(traceparent: str | None) -> context.Context | None:
    """The trace context a kept `traceparent` names (None when there is none)."""
    if not traceparent:
        return None
    return _W3C.extract({"traceparent": traceparent})

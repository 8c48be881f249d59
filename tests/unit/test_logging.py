import dataclasses
import json
import logging

from opentelemetry.sdk.trace import TracerProvider
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from observability.logging import CorrelationFilter, configure_logging


def _record(message: str = "hello") -> logging.LogRecord:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, message, None, None)
    CorrelationFilter("worker").filter(record)
    return record


def test_records_outside_any_context_carry_the_service_only() -> None:
    record = _record()
    assert record.service == "worker"  # type: ignore[attr-defined]
    assert not hasattr(record, "trace_id") and not hasattr(record, "workflow_id")


def test_records_carry_the_active_trace() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        record = _record()
    context = span.get_span_context()
    assert record.trace_id == f"{context.trace_id:032x}"  # type: ignore[attr-defined]
    assert record.span_id == f"{context.span_id:016x}"  # type: ignore[attr-defined]


def test_records_in_an_activity_carry_workflow_and_file_ids() -> None:
    @activity.defn
    def work() -> logging.LogRecord:
        return _record()

    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id="ingest-abc")
    record = env.run(work)
    assert record.workflow_id == "ingest-abc"  # type: ignore[attr-defined]
    assert record.file_id == "abc"  # type: ignore[attr-defined]


def test_output_is_one_json_object_per_line() -> None:
    configure_logging("api")
    handler = logging.getLogger().handlers[0]
    record = logging.LogRecord(
        "conveyor.test", logging.INFO, __file__, 1, "uploaded %s", ("x.png",), None
    )
    handler.filter(record)
    line = handler.format(record)
    data = json.loads(line)
    assert data["message"] == "uploaded x.png" and data["service"] == "api"
    assert data["level"] == "INFO" and data["logger"] == "conveyor.test"
    logging.basicConfig(force=True)

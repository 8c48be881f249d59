"""The local span store: every process appends its finished spans, one JSON object a line,
to its own file under `<state>/traces/`. No server needed; `conveyor trace` reads it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class JsonLinesSpanExporter(SpanExporter):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(_record(span), default=str) + "\n" for span in spans)
        # Written through to the page cache, where readers see it at once; not fsynced: a
        # trace lost to a power cut is not worth the API's CPU on every export.
        with self._lock, self._path.open("a", encoding="utf-8") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def _record(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    return {
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "name": span.name,
        "service": span.resource.attributes.get("service.name"),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "error": span.status.description,
        "attributes": dict(span.attributes or {}),
    }


@dataclass
class StoredSpan:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    start_ns: int
    end_ns: int
    status: str
    error: str | None
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def read_spans(directory: Path) -> Iterator[StoredSpan]:
    for path in sorted(directory.glob("*.jsonl")):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    yield StoredSpan(**json.loads(line))
                except (ValueError, TypeError):
                    continue  # a line cut short by a crash


def trace_of_file(directory: Path, file_id: str) -> list[StoredSpan]:
    """Every span of the traces that touched `file_id`, in start order."""
    spans = list(read_spans(directory))
    workflow_id = f"ingest-{file_id}"
    traces = {
        s.trace_id
        for s in spans
        if s.attributes.get("conveyor.file_id") == file_id
        or s.attributes.get("temporalWorkflowID") == workflow_id
    }
    return sorted((s for s in spans if s.trace_id in traces), key=lambda s: s.start_ns)

"""One trace per upload across processes: API request -> workflow -> every activity."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from conveyor_core.settings import Settings
from observability.span_store import StoredSpan, trace_of_file
from tests.helpers import assert_eventually
from tests.integration import samples
from tests.integration.conftest import REPO
from tests.integration.uploads import declare, put, wait_for_status
from workers.stack.environment import settings_env

# The seal and verify run as one activity; the claim, the plan and the outcome as local
# activities; an image's text stage is skipped by its plan, and its thumbnails and OCR run
# in one batch, a span each.
STAGES = (
    "RunActivity:seal_and_verify",
    "RunActivity:claim_blob",
    "RunActivity:plan_stages",
    "RunActivity:stage_scan",
    "RunActivity:stage_batch",
    "RunStage:thumbnails",
    "RunStage:ocr",
    "RunActivity:commit_outcome",
)


async def test_one_trace_covers_the_request_the_workflow_and_every_activity(
    stack: Settings, api: httpx.AsyncClient, key_a: str
) -> None:
    # An image, so that every stage has an activity (thumbnails and OCR apply).
    content = samples.text_image("traced")
    created = await declare(api, key_a, content, content_type="image/png")
    assert (await put(created, content)).status_code == 200
    await wait_for_status(api, key_a, created["file_id"], "ready")

    async def whole_trace() -> list[StoredSpan]:
        spans = trace_of_file(stack.state_path / "traces", created["file_id"])
        requests = [s for s in spans if s.name == "POST /v1/uploads"]
        assert len(requests) == 1, [s.name for s in spans]  # spans are flushed every 0.5 s
        request = requests[0]
        trace = [s for s in spans if s.trace_id == request.trace_id]
        names = {s.name for s in trace}
        for stage in STAGES:
            assert stage in names, names
        assert "CompleteWorkflow:IngestWorkflow" in names
        assert "relay object_uploaded" in names
        return trace

    trace = await assert_eventually(whole_trace, timeout=20)
    by_id = {s.span_id: s for s in trace}
    [root] = [s for s in trace if s.parent_id is None]
    assert root.name == "POST /v1/uploads" and root.service == "conveyor-api"
    assert root.attributes["conveyor.file_id"] == created["file_id"]
    for span in trace:
        if span is not root:
            assert span.parent_id in by_id, f"{span.name} has a parent outside the trace"
    start = next(s for s in trace if s.name == "StartWorkflow:IngestWorkflow")
    assert start.parent_id == root.span_id
    run = next(s for s in trace if s.name == "RunWorkflow:IngestWorkflow")
    assert run.service == "conveyor-worker" and run.parent_id == start.span_id
    # The relay's handling of the store event joins the trace under the request.
    relay = next(s for s in trace if s.name == "relay object_uploaded")
    assert relay.service == "conveyor-relay" and relay.parent_id == root.span_id
    signal = next(s for s in trace if s.name == "SignalWorkflow:object_uploaded")
    assert signal.parent_id == relay.span_id
    # A batch's stages are spans of their own within the batch's activity.
    batch = next(s for s in trace if s.name == "RunActivity:stage_batch")
    for name in ("RunStage:thumbnails", "RunStage:ocr"):
        assert next(s for s in trace if s.name == name).parent_id == batch.span_id, name
    services = {s.service for s in trace}
    assert {"conveyor-api", "conveyor-worker", "conveyor-relay"} <= services

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(settings_env(stack))
    printed = subprocess.run(
        [sys.executable, "-m", "workers.cli", "trace", created["file_id"]],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert printed.startswith(f"trace {root.trace_id}")
    for stage in STAGES:
        assert stage in printed

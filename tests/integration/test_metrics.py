"""Prometheus metrics of the API, the worker (ours and the Temporal SDK's) and the relay, each
on a port of its own (the API's port serves none)."""

from __future__ import annotations

import re

import httpx

from conveyor_core.settings import Settings
from tests.helpers import assert_eventually
from tests.integration.uploads import declare, put, sample_bytes, wait_for_status


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = (
        rf"^{re.escape(name)}(\{{{re.escape(wanted)}\}})? ([0-9.e+-]+)$"
        if labels
        else rf"^{re.escape(name)} ([0-9.e+-]+)$"
    )
    for line in text.splitlines():
        found = re.match(pattern, line)
        if found:
            return float(found.groups()[-1])
    return 0.0


def scrape(url: str) -> str:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    return response.text


async def test_counters_move_when_a_file_goes_through(
    stack: Settings, api: httpx.AsyncClient, key_a: str
) -> None:
    api_metrics = f"http://{stack.host}:{stack.api_metrics_port}/metrics"
    worker_metrics = f"http://{stack.host}:{stack.worker_metrics_port}/metrics"
    relay_metrics = f"http://{stack.host}:{stack.relay_metrics_port}/metrics"
    before_api, before_worker, before_relay = (
        scrape(api_metrics),
        scrape(worker_metrics),
        scrape(relay_metrics),
    )

    content = sample_bytes(3000)
    created = await declare(api, key_a, content)
    assert (await put(created, content)).status_code == 200
    await wait_for_status(api, key_a, created["file_id"], "ready")
    missing = await api.get("/v1/files/not-a-uuid", headers={"Authorization": f"Bearer {key_a}"})
    assert missing.status_code == 422

    after_api = scrape(api_metrics)
    assert (
        sample(after_api, "conveyor_uploads_created_total", method="PUT")
        == sample(before_api, "conveyor_uploads_created_total", method="PUT") + 1
    )
    assert (
        sample(after_api, "conveyor_upload_bytes_declared_total")
        >= sample(before_api, "conveyor_upload_bytes_declared_total") + 3000
    )
    assert sample(after_api, "conveyor_api_errors_total", code="invalid_request") >= 1

    async def worker_counted() -> None:
        after = scrape(worker_metrics)
        for activity in ("seal_and_verify", "stage_scan", "commit_outcome"):
            name = "conveyor_activity_duration_seconds_count"
            assert sample(after, name, activity=activity, outcome="succeeded") > sample(
                before_worker, name, activity=activity, outcome="succeeded"
            ), activity
        assert sample(after, "conveyor_files_finished_total", status="ready") > sample(
            before_worker, "conveyor_files_finished_total", status="ready"
        )
        assert sample(after, "conveyor_bytes_verified_total") >= 3000

    await assert_eventually(worker_counted, timeout=10)
    after_relay = scrape(relay_metrics)
    assert sample(after_relay, "conveyor_relay_events_total", outcome="signalled") > sample(
        before_relay, "conveyor_relay_events_total", outcome="signalled"
    )
    assert sample(after_relay, "conveyor_relay_lag_seconds_count") >= 1
    sdk = scrape(f"http://{stack.host}:{stack.worker_sdk_metrics_port}/metrics")
    assert "temporal_activity_execution_latency" in sdk or "temporal_workflow_completed" in sdk

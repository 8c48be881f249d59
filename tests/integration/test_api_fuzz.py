"""Schemathesis against the API's own OpenAPI spec on the real stack: thousands of generated
requests (valid and invalid), none answered with a 5xx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from conveyor_core.settings import Settings
from tests.integration.conftest import create_key, delete_webhooks, run_cli
from tests.integration.uploads import auth, declare, put, sample_bytes, wait_for_status

# Per operation; with the coverage and stateful phases the run sends well over 5,000 requests.
EXAMPLES_PER_OPERATION = 350


@pytest.mark.timeout(900)
async def test_generated_requests_never_get_a_server_error(
    stack: Settings, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    tenant = f"fuzz-{uuid.uuid4().hex[:8]}"
    key = create_key(stack, tenant)
    run_cli(stack, "tenants", "limits", tenant, "--rate-limit", "100000/second")
    # Real ids, so the operations on one file or upload get past their 404s.
    content = sample_bytes(512)
    ready = await declare(api, key, content)
    assert (await put(ready, content)).status_code == 200
    await wait_for_status(api, key, ready["file_id"], "ready")
    waiting = await declare(api, key, sample_bytes(64 * 1024 * 1024), declare_sha256=False)
    webhook = await api.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=auth(key)
    )
    assert webhook.status_code == 201

    config = tmp_path / "schemathesis.toml"
    config.write_text(
        "\n".join(
            [
                f"generation.max-examples = {EXAMPLES_PER_OPERATION}",
                "request-timeout = 30.0",
                "[parameters]",
                f'"path.file_id" = "{ready["file_id"]}"',
                f'"path.upload_id" = "{waiting["upload_id"]}"',
                f'"path.webhook_id" = "{webhook.json()["id"]}"',
            ]
        )
        + "\n"
    )
    report = tmp_path / "report.ndjson"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(config),
            "run",
            f"{stack.api_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            "--checks",
            "not_a_server_error",
            "--exclude-path",
            "/metrics",
            "--seed",
            "20261125",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
            # One worker thread: with two, Hypothesis parses lambdas' source with `ast` in
            # both at once, which CPython 3.11 can fail ("AST constructor recursion depth
            # mismatch"): an error of the harness, not of the API.
            "--workers",
            "1",
            "--no-color",
        ],
        env=env,
        cwd=tmp_path,  # its cache directory goes there, not into the work tree
        capture_output=True,
        text=True,
        timeout=900,
    )
    await delete_webhooks(api, key)  # its own and whatever the generated requests registered
    failures = run.stdout[run.stdout.find("FAILURES") :] if "FAILURES" in run.stdout else ""
    assert run.returncode == 0, (failures or run.stdout)[:8000] + run.stderr[-2000:]
    statuses = _response_statuses(report)
    assert len(statuses) >= 5000, f"only {len(statuses)} requests were sent"
    assert not [s for s in statuses if s >= 500]
    # Invalid input was generated and refused with 4xx codes, not only happy paths.
    assert {400, 404, 422} <= set(statuses), sorted(set(statuses))


def _response_statuses(report: Path) -> list[int]:
    """Every response status the run's NDJSON report records."""
    statuses: list[int] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            response = node.get("response")
            if isinstance(response, dict) and isinstance(response.get("status_code"), int):
                statuses.append(response["status_code"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for line in report.read_text().splitlines():
        walk(json.loads(line))
    return statuses

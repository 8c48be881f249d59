"""Latency from "PUT returned" to "status ready" for small files, against a running stack.

Uses the stack `make up` started (default settings, or CONVEYOR_* env). Each file is
followed with `GET /v1/files/{id}?wait=`, answered as soon as it ends. Reports p50/p95 over
N files, beside the PUT's own duration and the verify stage's duration measured in the same
run, so the orchestration overhead (events, relay, workflow, commit) is visible.

    .venv/bin/python -m bench.put_to_ready [--files 50] [--size 1024]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time

import httpx

from conveyor_core.settings import get_settings
from workers.cli import create_key

# Each GET holds its answer until the file ends (?wait=): the client learns it at once, and
# asks no workflow query that would compete with the run it times.
WAIT_SECONDS = 30


def until_finished(api: httpx.Client, file_id: str) -> dict[str, object]:
    while True:
        body: dict[str, object] = api.get(
            f"/v1/files/{file_id}", params={"wait": WAIT_SECONDS}
        ).json()
        if body["status"] not in ("awaiting_upload", "processing"):
            return body


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def run(files: int, size: int) -> dict[str, object]:
    settings = get_settings()
    key = create_key(settings, "bench")
    headers = {"Authorization": f"Bearer {key}"}
    put_ms: list[float] = []
    ready_ms: list[float] = []
    verify_ms: list[float] = []
    dedup_ms: list[float] = []
    declared: list[dict[str, object]] = []
    with (
        httpx.Client(base_url=settings.api_url, headers=headers, timeout=30) as api,
        httpx.Client(timeout=30) as store,
    ):
        for _ in range(files):
            content = os.urandom(size)
            created = api.post(
                "/v1/uploads",
                json={
                    "filename": "bench.bin",
                    "size": size,
                    "content_type": "application/octet-stream",
                    "sha256": hashlib.sha256(content).hexdigest(),
                },
            )
            created.raise_for_status()
            upload = created.json()
            declared.append(
                {
                    "filename": "again.bin",
                    "size": size,
                    "content_type": "application/octet-stream",
                    "sha256": hashlib.sha256(content).hexdigest(),
                }
            )
            started = time.perf_counter()
            store.put(upload["url"], content=content, headers=upload["headers"]).raise_for_status()
            put_done = time.perf_counter()
            body = until_finished(api, upload["file_id"])
            assert body["status"] == "ready", body
            ready_ms.append((time.perf_counter() - put_done) * 1000)
            put_ms.append((put_done - started) * 1000)
            verify_ms.append(float(body["stages"]["verify"]["duration_ms"]))  # type: ignore[index]
        # The same bytes again, same tenant: DEDUPLICATED, nothing sent; time to ready.
        for body in declared[:20]:
            started = time.perf_counter()
            again = api.post("/v1/uploads", json=body).json()
            assert again["method"] == "DEDUPLICATED", again
            assert until_finished(api, again["file_id"])["status"] == "ready"
            dedup_ms.append((time.perf_counter() - started) * 1000)
    return {
        "files": files,
        "deduplicated_create_to_ready_ms_p50": round(statistics.median(dedup_ms), 1),
        "size_bytes": size,
        "put_to_ready_ms": {
            "p50": round(percentile(ready_ms, 0.5), 1),
            "p95": round(percentile(ready_ms, 0.95), 1),
            "max": round(max(ready_ms), 1),
        },
        "baseline_put_ms_p50": round(statistics.median(put_ms), 1),
        "verify_stage_ms_p50": round(statistics.median(verify_ms), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    print(json.dumps(run(args.files, args.size), indent=2))


if __name__ == "__main__":
    main()

"""Load: many small uploads from concurrent clients against a running stack (`make up`).

Each client has its own key (as separate applications would) and, for each of its files,
declares it, PUTs the bytes to the store and follows the file until it is terminal: with
`GET /v1/files/{id}?wait=` (held until it ends, as the SDK does), or with `--poll S` a plain
GET every S seconds. Reports p50/p99 of create, PUT returned -> ready and (polling) GET
file, and counts every 5xx and 429.

    .venv/bin/python -m bench.load [--files 1000] [--clients 50] [--poll S]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import time
from dataclasses import dataclass, field

import httpx

from conveyor_core.settings import get_settings
from workers.cli import create_key


@dataclass
class Tally:
    create_ms: list[float] = field(default_factory=list)
    put_to_ready_ms: list[float] = field(default_factory=list)
    get_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    server_errors: int = 0
    rate_limited: int = 0

    def count(self, response: httpx.Response) -> None:
        if response.status_code >= 500:
            self.server_errors += 1
        elif response.status_code == 429:
            self.rate_limited += 1


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def quantiles(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99)}


async def one_file(
    api: httpx.AsyncClient, store: httpx.AsyncClient, tally: Tally, poll: float
) -> None:
    content = f"load {os.urandom(16).hex()}\n".encode() * 40
    started = time.perf_counter()
    created = await api.post(
        "/v1/uploads",
        json={
            "filename": "load.txt",
            "size": len(content),
            "content_type": "text/plain",
            "sha256": hashlib.sha256(content).hexdigest(),
        },
    )
    tally.create_ms.append((time.perf_counter() - started) * 1000)
    tally.count(created)
    created.raise_for_status()
    upload = created.json()
    put = await store.put(upload["url"], content=content, headers=upload["headers"])
    put.raise_for_status()
    landed = time.perf_counter()
    params = {"wait": 30} if poll <= 0 else None
    while True:
        asked = time.perf_counter()
        got = await api.get(f"/v1/files/{upload['file_id']}", params=params)
        tally.get_ms.append((time.perf_counter() - asked) * 1000)
        tally.count(got)
        if got.status_code == 200:
            status = got.json()["status"]
            if status not in ("awaiting_upload", "processing"):
                tally.put_to_ready_ms.append((time.perf_counter() - landed) * 1000)
                tally.statuses[status] = tally.statuses.get(status, 0) + 1
                return
        if poll > 0:
            await asyncio.sleep(poll)


async def client(api_url: str, key: str, files: int, tally: Tally, poll: float) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx.AsyncClient(base_url=api_url, headers=headers, timeout=60) as api,
        httpx.AsyncClient(timeout=60) as store,
    ):
        for _ in range(files):
            await one_file(api, store, tally, poll)


async def run(files: int, clients: int, poll: float = 0.0) -> dict[str, object]:
    settings = get_settings()
    keys = [create_key(settings, f"load-{time.time_ns()}-{i}") for i in range(clients)]
    tally = Tally()
    share = [files // clients + (1 if i < files % clients else 0) for i in range(clients)]
    started = time.perf_counter()
    await asyncio.gather(
        *(client(settings.api_url, k, n, tally, poll) for k, n in zip(keys, share, strict=True))
    )
    elapsed = time.perf_counter() - started
    return {
        "files": files,
        "clients": clients,
        "seconds": round(elapsed, 1),
        "files_per_second": round(files / elapsed, 1),
        "statuses": tally.statuses,
        "server_errors_5xx": tally.server_errors,
        "rate_limited_429": tally.rate_limited,
        "create_ms": quantiles(tally.create_ms),
        "put_to_ready_ms": quantiles(tally.put_to_ready_ms),
        "follow": "held GET (?wait=)" if poll <= 0 else f"GET every {poll} s",
        "get_file_ms": quantiles(tally.get_ms) if poll > 0 else None,
        "get_file_requests": len(tally.get_ms),
        "create_mean_ms": round(statistics.fmean(tally.create_ms), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument(
        "--poll", type=float, default=0.0, help="seconds between GETs; 0 holds one (?wait=)"
    )
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.files, args.clients, args.poll)), indent=2))


if __name__ == "__main__":
    main()

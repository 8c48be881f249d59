"""Scan throughput: `scan_blob` (object in the store -> clamd INSTREAM over TCP) vs
`clamdscan --stream` on a local copy of the same file (INSTREAM from a local file), and
`clamdscan` passing clamd the path (no streaming at all), in the same run; medians of 3.

Runs against a running stack with the default settings (`make up`):

    .venv/bin/python -m bench.scan [--sizes-mib 64 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio.testing import ActivityEnvironment

from activities.scan import ScanActivities
from conveyor_core.objectstore import make_s3_client
from conveyor_core.settings import Settings, get_settings
from conveyor_core.types import BlobRef, ScanInput
from workers.stack.layout import StackLayout

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB = 1024 * 1024


def random_file(path: Path, size_mib: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(size_mib):
            chunk = os.urandom(MIB)
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest()


def median_seconds(action: Callable[[], None], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def clamdscan(conf: Path, path: Path, *, stream: bool) -> Callable[[], None]:
    args = ["clamdscan", f"--config-file={conf}", "--no-summary", "--stdout"]
    args += ["--stream", str(path)] if stream else [str(path)]

    def run() -> None:
        out = subprocess.run(args, capture_output=True, text=True, timeout=600)
        if out.returncode != 0 or not out.stdout.strip().endswith("OK"):
            raise RuntimeError(f"clamdscan failed: {out.stdout} {out.stderr}")

    return run


def scan_blob(s3: S3Client, settings: Settings, blob: BlobRef) -> Callable[[], None]:
    activities = ScanActivities(s3, settings)

    def run() -> None:
        result = ActivityEnvironment().run(activities.scan_blob, ScanInput(blob=blob))
        if result.infected:
            raise RuntimeError(f"random bytes reported infected: {result}")

    return run


def bench_size(
    s3: S3Client, settings: Settings, workdir: Path, size_mib: int, rounds: int
) -> dict[str, float]:
    path = workdir / f"random-{size_mib}.bin"
    sha256 = random_file(path, size_mib)
    key = f"bench/scan/{uuid.uuid4()}"
    s3.upload_file(str(path), settings.bucket, key)
    blob = BlobRef(settings.bucket, key, sha256, size_mib * MIB, "application/octet-stream")
    conf = StackLayout.of(settings).clamav / "clamd.conf"
    try:
        seconds = {
            "scan_blob": median_seconds(scan_blob(s3, settings, blob), rounds),
            "clamdscan_stream": median_seconds(clamdscan(conf, path, stream=True), rounds),
            "clamdscan_path": median_seconds(clamdscan(conf, path, stream=False), rounds),
        }
    finally:
        s3.delete_object(Bucket=settings.bucket, Key=key)
        path.unlink()
    figures = {f"{name}_mib_s": round(size_mib / s, 1) for name, s in seconds.items()}
    figures |= {f"{name}_s": round(s, 3) for name, s in seconds.items()}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes-mib", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = get_settings()
    s3 = make_s3_client(settings)
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-scan-") as workdir:
        results = {
            f"{size}_mib": bench_size(s3, settings, Path(workdir), size, args.rounds)
            for size in args.sizes_mib
        }
    print(json.dumps({"rounds": args.rounds, "results": results}, indent=2))


if __name__ == "__main__":
    main()

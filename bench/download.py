"""Download benchmark against a running stack (`make up`), medians of several runs, same run:

- the Conveyor SDK's `download` (one stream, resumable, the SHA-256 checked as the bytes
  arrive) of a private file (its pre-signed store URL) and of a public one (through the CDN
  edge, from its cache after the first run);
- boto3 `download_file` of the same object straight from the store (ranged GETs in
  parallel, botocore's defaults, in a process of its own without awscrt, as in
  bench.upload), the baseline;
- a plain streaming GET of the same pre-signed URL that only writes the bytes (no hashing):
  what verifying costs is the difference.

Each with the CPU seconds per GiB of the client and of the store, and how busy the machine
was (the SDK's SHA-256 costs about 0.6 CPU-s per GiB that boto3, checking no whole-file
checksum, does not spend).

    .venv/bin/python -m bench.download [--size-mib 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.meter import Meter, Sample
from bench.upload import MIB, compact_store, program_pid, quiet, random_file, sample_of_script
from conveyor_client import Client, File
from conveyor_core.settings import Settings, get_settings
from workers.cli import create_key

CLIENTS = ("boto3", "plain_get", "sdk_private", "sdk_public")

BOTO3_DOWNLOAD = """
import dataclasses, json, sys
sys.modules["awscrt"] = None  # as `pip install boto3` gives it
from boto3.s3.transfer import TransferConfig
from bench.meter import Meter
from conveyor_core.objectstore import make_s3_client
from conveyor_core.settings import get_settings
settings = get_settings()
s3 = make_s3_client(settings)
with Meter(int(sys.argv[4])) as meter:
    s3.download_file(sys.argv[1], sys.argv[2], sys.argv[3], Config=TransferConfig())
print(json.dumps(dataclasses.asdict(meter.sample)))
"""


def boto3_download(bucket: str, key: str, target: Path, store_pid: int) -> Sample:
    return sample_of_script(BOTO3_DOWNLOAD, bucket, key, str(target), str(store_pid))


def plain_get(url: str, target: Path) -> None:
    with httpx.stream("GET", url, timeout=60) as response, target.open("wb") as out:
        response.raise_for_status()
        for chunk in response.iter_raw():
            out.write(chunk)


def content_url(settings: Settings, key: str, file_id: str) -> str:
    answer = httpx.get(
        f"{settings.api_url}/v1/files/{file_id}/content",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.status_code == 307, answer.text
    return answer.headers["location"]


def ready_files(client: Client, path: Path) -> tuple[File, File]:
    private = client.upload(path, wait=True, wait_timeout=1800)
    public = client.upload(path, visibility="public", wait=True, wait_timeout=1800)
    assert private.status == public.status == "ready", (private, public)
    return private, public


def measure(
    settings: Settings, client: Client, key: str, files: tuple[File, File], runs: int
) -> dict[str, list[Sample]]:
    private, public = files
    url = content_url(settings, key, private.id)
    bucket, object_key = httpx.URL(url).path.lstrip("/").split("/", 1)
    store_pid = program_pid(settings, "seaweedfs")
    samples: dict[str, list[Sample]] = {name: [] for name in CLIENTS}
    with tempfile.TemporaryDirectory(prefix="bench-download-") as scratch:
        target = Path(scratch) / "copy.bin"
        runners: dict[str, Callable[[], object]] = {
            "plain_get": lambda: plain_get(content_url(settings, key, private.id), target),
            "sdk_private": lambda: client.download(private.id, target),
            "sdk_public": lambda: client.download(public.id, target),
        }
        for _ in range(runs):
            for name in CLIENTS:
                target.unlink(missing_ok=True)
                quiet()
                if name == "boto3":
                    samples[name].append(boto3_download(bucket, object_key, target, store_pid))
                    continue
                with Meter(store_pid) as meter:
                    runners[name]()
                samples[name].append(meter.sample)
    return samples


def summary(samples: dict[str, list[Sample]], size: int) -> dict[str, object]:
    gib = size / (1024 * MIB)
    speed = {
        name: round(size / MIB / statistics.median(s.seconds for s in runs), 1)
        for name, runs in samples.items()
    }
    cpu = {
        name: {
            "client": round(statistics.median(s.client_cpu for s in runs) / gib, 2),
            "store": round(statistics.median(s.store_cpu for s in runs) / gib, 2),
            "machine_busy": round(statistics.median(s.machine_busy for s in runs), 2),
        }
        for name, runs in samples.items()
    }
    return {
        "mib_per_s": speed,
        "cpu_s_per_gib": cpu,
        "sdk_private_vs_boto3": round(speed["sdk_private"] / speed["boto3"], 2),
        "sdk_private_vs_plain_get": round(speed["sdk_private"] / speed["plain_get"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    settings = get_settings()
    compact_store(settings)
    key = create_key(settings, f"bench-download-{time.time_ns()}")
    with (
        tempfile.TemporaryDirectory(prefix="bench-download-src-") as scratch,
        Client(settings.api_url, key, state_dir=Path(scratch) / "state") as client,
    ):
        path = random_file(Path(scratch), options.size_mib * MIB)
        files = ready_files(client, path)
        samples = measure(settings, client, key, files, options.runs)
        for file in files:
            client.delete(file.id)
    result = {"size_mib": options.size_mib, "runs": options.runs}
    result |= summary(samples, options.size_mib * MIB)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

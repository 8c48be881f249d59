"""Upload benchmarks against a running stack (`make up`), medians of several runs:

- throughput: the Conveyor SDK (pre-signed multipart, parts in parallel) vs boto3
  `upload_file` straight to the same store, same file, same run (boto3 as `pip install
  boto3` gives it, in a process of its own: with awscrt importable, as the SDK's dependency
  makes it here, botocore computes its CRC32s with awscrt instead of zlib and was about 10%
  slower, so that figure is shown too but is not the baseline): the SDK as it comes
  (parts signed with CRC64NVME, as boto3 signs its parts with CRC32) and with
  `part_checksum="sha256"` (SHA-256 of the file first, then of each part); and, as the
  ceiling any client of pre-signed parts can reach here, hand-made parallel parts that do
  nothing but send the bytes (no checksums, no API);
- where the CPU goes, per GiB and for each of them: the client's, the object store's, and
  how busy the machine was; with the speed-up over boto3 that a client costing no CPU at
  all could reach if the upload keeps the machine busy (the store's and boto3's CPU over
  the store's), the bound on any client's ratio here;
- the API's share: API process CPU seconds per GiB uploaded through the SDK, as measured
  and net of what the idle process burns over the same time (measured first, same run);
- memory: peak RSS of the API and of the worker (restarted first, so the high-water mark
  is this file's) while a file goes through to a terminal status, for two sizes.

    .venv/bin/python -m bench.upload [--size-mib 1024] [--runs 3] [--rss-mib 256 4096]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.meter import Meter, Sample, process_cpu_seconds
from conveyor_client import Client, PartChecksum
from conveyor_core.objectstore import make_s3_client, part_layout
from conveyor_core.settings import Settings, get_settings
from workers.cli import create_key
from workers.stack import manage
from workers.stack.layout import REPO_ROOT, venv_bin

MIB = 1024 * 1024
# What is timed, in the order each run goes through them.
CLIENTS = ("boto3", "boto3crt", "handmade", "sdk", "sdk_sha256")


def random_file(directory: Path, size: int) -> Path:
    path = directory / f"bench-{size // MIB}MiB.bin"
    with path.open("wb") as out:
        remaining = size
        while remaining:
            chunk = min(remaining, 16 * MIB)
            out.write(os.urandom(chunk))
            remaining -= chunk
    return path


def program_pid(settings: Settings, program: str) -> int:
    found = re.search(
        rf"^{program}\s+RUNNING\s+pid (\d+)", manage.supervisorctl(settings, "status"), re.M
    )
    assert found, f"{program} is not running"
    return int(found.group(1))


def idle_cpu_per_second(pid: int, seconds: float = 15.0) -> float:
    """What the API burns doing nothing (uvicorn's 10 Hz housekeeping tick, exporters)."""
    before = process_cpu_seconds(pid)
    time.sleep(seconds)
    return (process_cpu_seconds(pid) - before) / seconds


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert found
    return int(found.group(1)) / 1024


def quiet() -> None:
    """Each run starts on a quiet machine: the previous run's bytes written out (the store's
    page cache flushing 1 GiB slowed whatever ran beside it) and nothing else running."""
    os.sync()
    time.sleep(2)


def compact_store(settings: Settings) -> None:
    """Reclaims what earlier runs deleted (`volume.vacuum` through `weed shell`), so the
    store does not compact volumes of its own accord while a run is measured, nor fill the
    disk: each run leaves several GiB of deleted bytes."""
    subprocess.run(
        [str(venv_bin("weed")), "shell", f"-master=127.0.0.1:{settings.swfs_master_port}"],
        input="lock\nvolume.vacuum -garbageThreshold 0.01\nunlock\n",
        text=True,
        capture_output=True,
        timeout=900,
        check=True,
    )


def warm_up(settings: Settings, directory: Path) -> None:
    """One small multipart upload first, so first-request costs (imports, connections)
    are not counted against the API."""
    small = random_file(directory, 40 * MIB)
    key = create_key(settings, f"bench-warm-{time.time_ns()}")
    with Client(settings.api_url, key, state_dir=tempfile.mkdtemp()) as client:
        client.upload(small, wait=True)
    small.unlink()


BOTO3_UPLOAD = """
import dataclasses, json, sys
if sys.argv[1] == "plain":
    sys.modules["awscrt"] = None  # as without the package: botocore then uses zlib's CRC32
from boto3.s3.transfer import TransferConfig
from bench.meter import Meter
from conveyor_core.objectstore import make_s3_client
from conveyor_core.settings import get_settings
settings = get_settings()
s3 = make_s3_client(settings)
with Meter(int(sys.argv[4])) as meter:
    s3.upload_file(sys.argv[2], settings.bucket, sys.argv[3], Config=TransferConfig())
print(json.dumps(dataclasses.asdict(meter.sample)))
"""


def sample_of_script(script: str, *args: str) -> Sample:
    """Runs `script` in a fresh Python process at the repository's root and reads the
    `Sample` it prints last as JSON (measured there, around the call alone)."""
    answer = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
        cwd=REPO_ROOT,
    )
    return Sample(**json.loads(answer.stdout.splitlines()[-1]))


def boto3_upload(path: Path, name: str, store_pid: int, *, crt: bool) -> Sample:
    """boto3's `upload_file`, with botocore's defaults, in a fresh process."""
    return sample_of_script(
        BOTO3_UPLOAD, "crt" if crt else "plain", str(path), name, str(store_pid)
    )


def handmade_parts(settings: Settings, path: Path, name: str, threads: int = 4) -> None:
    """Sends the file as the SDK lays it out (same parts, same threads) with URLs pre-signed
    by boto3 beforehand and nothing else: no checksums, no hashing, no API calls."""
    s3 = make_s3_client(settings)
    size = path.stat().st_size
    layout = part_layout(size, settings.multipart_part_size)
    upload_id = s3.create_multipart_upload(Bucket=settings.bucket, Key=name)["UploadId"]
    fd = os.open(path, os.O_RDONLY)

    def send(number: int, store: httpx.Client) -> dict[str, object]:
        start = (number - 1) * layout.part_size
        length = layout.part_length(size, number)
        url = s3.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": settings.bucket,
                "Key": name,
                "UploadId": upload_id,
                "PartNumber": number,
                "ContentLength": length,
            },
            ExpiresIn=3600,
        )
        body = (
            os.pread(fd, min(MIB, start + length - at), at)
            for at in range(start, start + length, MIB)
        )
        response = store.put(url, content=body, headers={"Content-Length": str(length)})
        response.raise_for_status()
        return {"PartNumber": number, "ETag": response.headers["etag"]}

    try:
        with (
            httpx.Client(timeout=120, limits=httpx.Limits(max_connections=threads)) as store,
            concurrent.futures.ThreadPoolExecutor(threads) as pool,
        ):
            numbers = range(1, layout.part_count + 1)
            parts = list(pool.map(lambda n: send(n, store), numbers))
    finally:
        os.close(fd)
    s3.complete_multipart_upload(
        Bucket=settings.bucket,
        Key=name,
        UploadId=upload_id,
        MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
    )


def remove_uploads(settings: Settings, files: list[tuple[str, str]], objects: list[str]) -> None:
    """Deletes what the runs uploaded, after the last run: a delete between runs left the
    store reclaiming a GiB (and, past its garbage threshold, compacting a volume) while the
    next run was measured."""
    s3 = make_s3_client(settings)
    for name in objects:
        s3.delete_object(Bucket=settings.bucket, Key=name)
    for key, file_id in files:
        with Client(settings.api_url, key, state_dir=tempfile.mkdtemp()) as client:
            client.delete(file_id)


def throughput(settings: Settings, path: Path, runs: int) -> dict[str, object]:
    size = path.stat().st_size
    samples: dict[str, list[Sample]] = {how: [] for how in CLIENTS}
    api_cpu: list[float] = []
    api_pid, store_pid = program_pid(settings, "api"), program_pid(settings, "seaweedfs")
    uploaded: list[tuple[str, str]] = []  # (key, file id), deleted once every run is done
    compact_store(settings)
    warm_up(settings, path.parent)
    idle_rate = idle_cpu_per_second(api_pid)
    for run in range(runs):
        quiet()
        samples["boto3"].append(boto3_upload(path, f"bench/boto3-{run}", store_pid, crt=False))

        quiet()
        samples["boto3crt"].append(boto3_upload(path, f"bench/boto3crt-{run}", store_pid, crt=True))

        quiet()
        with Meter(store_pid) as meter:
            handmade_parts(settings, path, f"bench/handmade-{run}")
        assert meter.sample
        samples["handmade"].append(meter.sample)

        sample, used = sdk_upload(settings, path, "crc64nvme", api_pid, store_pid, uploaded)
        samples["sdk"].append(sample)
        api_cpu.append(used)

        sample, _ = sdk_upload(settings, path, "sha256", api_pid, store_pid, uploaded)
        samples["sdk_sha256"].append(sample)
    # A window that caught background work (a restart's aftermath, page cache writeback)
    # overstates idle; the lower of two readings makes the net figure the conservative one.
    idle_rate = min(idle_rate, idle_cpu_per_second(api_pid))
    baselines = ("boto3", "boto3crt", "handmade")
    objects = [f"bench/{how}-{run}" for how in baselines for run in range(runs)]
    remove_uploads(settings, uploaded, objects)

    gib = size / 1024**3
    sdk_seconds = [sample.seconds for sample in samples["sdk"]]
    api_net_cpu = [
        used - idle_rate * elapsed for used, elapsed in zip(api_cpu, sdk_seconds, strict=True)
    ]

    def median(how: str, field: str) -> float:
        return statistics.median(getattr(sample, field) for sample in samples[how])

    mib_s = {how: size / MIB / median(how, "seconds") for how in CLIENTS}
    # On a machine the upload keeps busy, an upload takes about (store + client CPU) / CPUs:
    # even a client that cost nothing could not beat boto3 by more than this.
    ceiling = (median("boto3", "store_cpu") + median("boto3", "client_cpu")) / median(
        "handmade", "store_cpu"
    )
    return {
        "file_mib": size / MIB,
        "boto3_upload_file_mib_s": round(mib_s["boto3"], 1),
        "boto3_with_awscrt_mib_s": round(mib_s["boto3crt"], 1),
        "handmade_parts_mib_s": round(mib_s["handmade"], 1),
        "sdk_mib_s": round(mib_s["sdk"], 1),
        "sdk_vs_boto3": round(mib_s["sdk"] / mib_s["boto3"], 2),
        "sdk_sha256_mib_s": round(mib_s["sdk_sha256"], 1),
        "sdk_sha256_vs_boto3": round(mib_s["sdk_sha256"] / mib_s["boto3"], 2),
        "handmade_vs_boto3": round(mib_s["handmade"] / mib_s["boto3"], 2),
        "sdk_vs_handmade": round(mib_s["sdk"] / mib_s["handmade"], 2),
        "cpu_s_per_gib": {
            how: {
                "client": round(median(how, "client_cpu") / gib, 2),
                "store": round(median(how, "store_cpu") / gib, 2),
                "machine_busy": round(median(how, "machine_busy"), 2),
            }
            for how in CLIENTS
        },
        "free_client_ceiling_vs_boto3": round(ceiling, 2),
        "api_cpu_s_per_gib": round(statistics.median(api_cpu) / gib, 4),
        "api_idle_cpu_ms_per_s": round(idle_rate * 1000, 2),
        "api_cpu_s_per_gib_net_of_idle": round(statistics.median(api_net_cpu) / gib, 4),
        "api_cpu_ms_per_upload_net_of_idle": round(statistics.median(api_net_cpu) * 1000, 1),
    }


def sdk_upload(
    settings: Settings,
    path: Path,
    part_checksum: PartChecksum,
    api_pid: int,
    store_pid: int,
    uploaded: list[tuple[str, str]],
) -> tuple[Sample, float]:
    """One SDK upload, measured until the upload completed; and the API's CPU seconds."""
    # A tenant of its own per upload: the same bytes would otherwise be DEDUPLICATED.
    key = create_key(settings, f"bench-upload-{time.time_ns()}")
    quiet()
    with Client(settings.api_url, key, state_dir=tempfile.mkdtemp()) as client:
        cpu_before = process_cpu_seconds(api_pid)
        with Meter(store_pid) as meter:
            file_id = client.upload(path, part_checksum=part_checksum).id
        used = process_cpu_seconds(api_pid) - cpu_before
        # Its processing (hashing, scanning 1 GiB) must not overlap the next upload.
        client.wait_until_ready(file_id, timeout=1800)
    uploaded.append((key, file_id))
    assert meter.sample
    return meter.sample, used


def peak_memory(settings: Settings, path: Path) -> dict[str, object]:
    compact_store(settings)
    manage.supervisorctl(settings, "restart", "api", "worker")
    time.sleep(3)
    warm_up(settings, path.parent)  # a fresh API's first requests pay for imports and pools
    key = create_key(settings, f"bench-rss-{time.time_ns()}")
    api_pid, worker_pid = program_pid(settings, "api"), program_pid(settings, "worker")
    idle_rate = idle_cpu_per_second(api_pid, seconds=10)
    with Client(settings.api_url, key, state_dir=tempfile.mkdtemp()) as client:
        started = time.perf_counter()
        cpu_before = process_cpu_seconds(api_pid)
        uploaded = client.upload(path)
        upload_s = time.perf_counter() - started
        api_cpu = process_cpu_seconds(api_pid) - cpu_before
        file = client.wait_until_ready(uploaded.id, timeout=1800)
        elapsed = time.perf_counter() - started
    idle_rate = min(idle_rate, idle_cpu_per_second(api_pid, seconds=10))  # as in throughput()
    api_rss, worker_rss = peak_rss_mib(api_pid), peak_rss_mib(worker_pid)
    remove_uploads(settings, [(key, uploaded.id)], [])
    gib = path.stat().st_size / 1024**3
    return {
        "file_mib": path.stat().st_size / MIB,
        "status": file.status,
        "status_detail": file.status_detail,
        "upload_s": round(upload_s, 1),
        "api_cpu_s_per_gib": round(api_cpu / gib, 4),
        "api_cpu_s_per_gib_net_of_idle": round((api_cpu - idle_rate * upload_s) / gib, 4),
        "upload_to_terminal_s": round(elapsed, 1),
        "api_peak_rss_mib": round(api_rss, 1),
        "worker_peak_rss_mib": round(worker_rss, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rss-mib", type=int, nargs="*", default=[256, 4096])
    args = parser.parse_args()
    settings = get_settings()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(dir=settings.state_path) as scratch:
        directory = Path(scratch)
        path = random_file(directory, args.size_mib * MIB)
        results["throughput"] = throughput(settings, path, args.runs)
        path.unlink()
        memory = []
        for size in args.rss_mib:
            path = random_file(directory, size * MIB)
            memory.append(peak_memory(settings, path))
            path.unlink()
        results["memory"] = memory
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

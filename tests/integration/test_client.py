"""The Python client and the `conveyor` client commands against the real stack."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import string
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest

from conveyor_client import (
    Client,
    GoneError,
    NotFoundError,
    PartChecksum,
    UploadPaused,
)
from conveyor_client._exceptions import store_error
from conveyor_client._source import b64_digest
from conveyor_core.settings import Settings
from tests.integration.conftest import create_key
from tests.integration.uploads import sample_bytes

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


def word() -> str:
    """A made-up word, so a search finds this test's file alone."""
    return "".join(random.choices(string.ascii_lowercase, k=12))


def random_file(directory: Path, size: int, name: str = "big.bin") -> Path:
    path = directory / name
    with open(path, "wb") as out:
        for _ in range(size // MIB):
            out.write(os.urandom(MIB))
        out.write(os.urandom(size % MIB))
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def client(stack: Settings, key_a: str, state_dir: Path) -> Iterator[Client]:
    with Client(stack.api_url, key_a, state_dir=state_dir, part_concurrency=4) as c:
        yield c


def test_client_single_put_upload_ready_download_search_delete(
    client: Client, tmp_path: Path
) -> None:
    marker = word()
    path = tmp_path / f"note {marker}.txt"
    path.write_bytes(sample_bytes(200_000))
    seen: list[tuple[int, int]] = []

    file = client.upload(path, wait=True, progress=lambda d, t: seen.append((d, t)))

    assert file.status == "ready", file
    assert file.content_type == "text/plain"
    assert file.sha256 == sha256_of(path)
    assert seen[-1] == (200_000, 200_000)
    target = client.download(file.id, tmp_path / "copy.txt")
    assert target.read_bytes() == path.read_bytes()
    assert file.id in {f.id for f in client.search(marker, limit=1)}
    client.delete(file.id)
    with pytest.raises(GoneError):
        client.get_file(file.id)


def test_client_search_pages_through_next_cursor(client: Client, tmp_path: Path) -> None:
    ids = set()
    for i in range(3):
        path = tmp_path / f"paged{i}.txt"
        path.write_bytes(sample_bytes(1000))
        ids.add(client.upload(path, content_type="text/plain").id)
    listed = [f.id for f in client.search(limit=1)]
    assert len(listed) == len(set(listed)) >= 3
    assert ids <= set(listed)


def test_client_multipart_upload_reaches_ready_with_its_sha256(
    client: Client, tmp_path: Path, state_dir: Path
) -> None:
    path = random_file(tmp_path, 64 * MIB)
    seen: list[int] = []

    file = client.upload(path, wait=True, wait_timeout=180, progress=lambda d, t: seen.append(d))

    assert file.status == "ready", file
    assert file.sha256 == sha256_of(path)
    assert file.size == 64 * MIB
    assert seen[-1] == 64 * MIB
    assert client.last_part_puts == 8  # 8 MiB parts, none sent twice
    assert list(state_dir.glob("*.json")) == []  # the state goes once the upload completes


def test_client_multipart_upload_is_two_api_calls(client: Client, tmp_path: Path) -> None:
    path = random_file(tmp_path, 40 * MIB)
    calls: list[str] = []
    bodies: list[dict[str, Any]] = []

    def record(request: httpx.Request) -> None:
        calls.append(f"{request.method} {request.url.path}")
        if request.method == "POST":
            bodies.append(json.loads(request.content))

    client._api.http.event_hooks["request"].append(record)

    file = client.upload(path)

    # The part URLs came with the create answer and the file with the complete answer.
    assert [c.split("/")[-1] for c in calls] == ["uploads", "complete"], calls
    # By default the parts carry CRC64NVME, and the store checked the whole file's.
    created, completed = bodies
    assert created["part_checksum"] == "crc64nvme" and "sha256" not in created
    assert all(set(p) == {"part_number", "crc64nvme"} for p in created["parts"])
    assert completed["crc64nvme"] and all("crc64nvme" in p for p in completed["parts"])
    assert file.status == "processing" and file.size == 40 * MIB
    assert client.last_part_puts == 5
    assert client.wait_until_ready(file.id, timeout=120).sha256 == sha256_of(path)


def _stop_after(parts: int, part_size: int = 8 * MIB) -> tuple[threading.Event, Any]:
    stop = threading.Event()

    def progress(done: int, _total: int) -> None:
        if done >= parts * part_size:
            stop.set()

    return stop, progress


@pytest.mark.parametrize("part_checksum", ["crc64nvme", "sha256"])
def test_client_paused_upload_resumes_without_resending_held_parts(
    stack: Settings, key_a: str, tmp_path: Path, state_dir: Path, part_checksum: PartChecksum
) -> None:
    path = random_file(tmp_path, 64 * MIB)
    stop, progress = _stop_after(3)
    with Client(stack.api_url, key_a, state_dir=state_dir, part_concurrency=2) as first:
        with pytest.raises(UploadPaused) as paused:
            first.upload(path, stop=stop, progress=progress, part_checksum=part_checksum)
        assert list(state_dir.glob("*.json")), "the paused upload keeps its state"
        upload_id = paused.value.progress.upload_id
        assert upload_id is not None
        held = {p.part_number for p in first.get_upload(upload_id).parts}
        assert 3 <= len(held) < 8, held

    with Client(stack.api_url, key_a, state_dir=state_dir) as second:
        file = second.upload(path, wait=True, wait_timeout=180)
        assert second.last_parts_skipped == len(held)
        assert second.last_part_puts == 8 - len(held)
    assert file.status == "ready", file
    assert file.sha256 == sha256_of(path)
    assert list(state_dir.glob("*.json")) == []


def test_client_cancels_a_paused_upload_of_a_file_changed_since(
    stack: Settings, tmp_path: Path, state_dir: Path
) -> None:
    key = create_key(stack, f"changed-{uuid.uuid4().hex[:8]}")
    path = random_file(tmp_path, 40 * MIB)
    stop, progress = _stop_after(1)
    with Client(stack.api_url, key, state_dir=state_dir, part_concurrency=2) as client:
        with pytest.raises(UploadPaused) as paused:
            client.upload(path, stop=stop, progress=progress)
        stale = paused.value.progress
        assert stale.upload_id is not None and stale.file_id is not None
        with open(path, "r+b") as edit:  # the file changes before the upload is resumed
            edit.write(b"edited")
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))

        file = client.upload(path, wait=True, wait_timeout=120)

        assert (file.status, file.sha256) == ("ready", sha256_of(path))
        assert client.last_parts_skipped == 0  # nothing of the old bytes was kept
        # The old upload is not left waiting for bytes until it expires.
        assert client.wait_until_ready(stale.file_id, timeout=60).status == "cancelled"
        assert client.get_upload(stale.upload_id).status == "cancelled"
    assert list(state_dir.glob("*.json")) == []


def test_bandwidth_limit_paces_uploads_and_downloads_and_a_stop_is_prompt(
    stack: Settings, key_a: str, tmp_path: Path, state_dir: Path
) -> None:
    path = random_file(tmp_path, 40 * MIB)
    limit = 16 * MIB  # per second
    with Client(stack.api_url, key_a, state_dir=state_dir, bandwidth_limit=limit) as client:
        started = time.monotonic()
        uploaded = client.upload(path)
        took = time.monotonic() - started
        # Unlimited this takes well under a second here; paced, at least (40 - 1) / 16 s.
        assert took >= 39 / 16, took
        file = client.wait_until_ready(uploaded.id, timeout=120)
        assert file.sha256 == sha256_of(path)

        started = time.monotonic()
        copy = client.download(file.id, tmp_path / "copy.bin")
        assert time.monotonic() - started >= 39 / 16
        assert sha256_of(copy) == file.sha256

    # At a crawl, a stop does not wait for the parts in flight to finish.
    stop = threading.Event()
    with Client(stack.api_url, key_a, state_dir=state_dir, bandwidth_limit=MIB) as slow:
        threading.Timer(1.0, stop.set).start()
        started = time.monotonic()
        with pytest.raises(UploadPaused) as paused:
            slow.upload(path, stop=stop)
        assert time.monotonic() - started < 5
    assert paused.value.resumable and paused.value.progress.parts_done == 0
    slow_state = list(state_dir.glob("*.json"))
    assert len(slow_state) == 1
    with Client(stack.api_url, key_a, state_dir=state_dir) as resumed:
        assert resumed.upload(path).id == paused.value.progress.file_id


_SLOW_UPLOADER = textwrap.dedent(
    """
    import sys, time
    from conveyor_client import Client

    api_url, key, state_dir, path = sys.argv[1:5]
    with Client(api_url, key, state_dir=state_dir, part_concurrency=2) as client:
        # A slow link: about 20 MiB/s, so the test can kill the process mid-upload.
        client.upload(path, progress=lambda done, total: time.sleep(0.05))
    """
)


def test_client_killed_mid_upload_resumes_and_finishes(
    stack: Settings, key_a: str, tmp_path: Path, state_dir: Path
) -> None:
    path = random_file(tmp_path, 64 * MIB)
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_UPLOADER, stack.api_url, key_a, str(state_dir), str(path)],
        cwd=REPO,
    )
    # The state file names the upload as soon as it is made; the store's own list of parts
    # says when two are in (the state is not rewritten after every part).
    try:
        deadline = time.monotonic() + 60
        upload_id = None
        with Client(stack.api_url, key_a, state_dir=tmp_path / "watcher") as watcher:
            while upload_id is None or len(watcher.get_upload(upload_id).parts) < 2:
                assert process.poll() is None, "the upload ended before it could be killed"
                assert time.monotonic() < deadline
                files = list(state_dir.glob("*.json"))
                if files and upload_id is None:
                    try:
                        upload_id = json.loads(files[0].read_text())["upload_id"]
                    except (OSError, ValueError, KeyError):
                        upload_id = None
                time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(30)

    assert upload_id is not None
    with Client(stack.api_url, key_a, state_dir=state_dir) as client:
        held = client.get_upload(upload_id).parts
        assert 2 <= len(held) < 8
        file = client.upload(path, wait=True, wait_timeout=180)
        assert client.last_parts_skipped == len(held)
        assert client.last_part_puts == 8 - len(held)
    assert file.status == "ready", file
    assert file.sha256 == sha256_of(path)


class _LoseFirstAnswer(httpx.BaseTransport):
    """Lets the first request to a path ending in `suffix` reach the API, then loses its
    answer, as a dropped link would: the API acted, the client does not know it."""

    def __init__(self, inner: httpx.BaseTransport, method: str, suffix: str) -> None:
        self.inner, self.method, self.suffix = inner, method, suffix
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == self.method and request.url.path.endswith(self.suffix):
            self.sent += 1
            if self.sent == 1:
                response.close()
                raise httpx.ReadError("connection reset by peer", request=request)
        return response


def _lose_first_answer(client: Client, method: str, suffix: str) -> _LoseFirstAnswer:
    lossy = _LoseFirstAnswer(client._api.http._transport, method, suffix)
    client._api.http._transport = lossy
    return lossy


def test_client_repeats_a_completion_whose_answer_was_lost(
    client: Client, tmp_path: Path, state_dir: Path
) -> None:
    path = random_file(tmp_path, 40 * MIB)
    lossy = _lose_first_answer(client, "POST", "/complete")

    file = client.upload(path)

    assert lossy.sent == 2
    assert client.wait_until_ready(file.id, timeout=120).sha256 == sha256_of(path)
    assert list(state_dir.glob("*.json")) == []


@pytest.mark.parametrize("size", [200_000, 40 * MIB], ids=["put", "multipart"])
def test_client_repeats_a_create_whose_answer_was_lost_without_a_second_upload(
    stack: Settings, tmp_path: Path, state_dir: Path, size: int
) -> None:
    key = create_key(stack, f"lost-create-{uuid.uuid4().hex[:8]}")
    path = random_file(tmp_path, size)
    with Client(stack.api_url, key, state_dir=state_dir) as client:
        lossy = _lose_first_answer(client, "POST", "/v1/uploads")

        file = client.upload(path, wait=True, wait_timeout=120)

        assert lossy.sent == 2
        assert (file.status, file.sha256) == ("ready", sha256_of(path))
        # The repeat carried the first request's Idempotency-Key: one file, not two.
        assert [f.id for f in client.search()] == [file.id]


def test_client_sha256_parts_find_a_duplicate_before_sending_any(
    client: Client, tmp_path: Path
) -> None:
    """With SHA-256 the file is hashed first, so bytes the tenant holds are never sent; with
    CRC64NVME they are sent and the workflow finds the duplicate."""
    path = random_file(tmp_path, 40 * MIB)
    first = client.upload(path, part_checksum="sha256", wait=True, wait_timeout=180)
    assert first.status == "ready" and first.sha256 == sha256_of(path)
    assert client.last_part_puts == 5

    copy = tmp_path / "copy.bin"
    copy.write_bytes(path.read_bytes())
    again = client.upload(copy, part_checksum="sha256", wait=True, wait_timeout=180)
    assert client.last_part_puts == 0
    assert again.id != first.id and again.status == "ready" and again.sha256 == first.sha256

    third = tmp_path / "third.bin"
    third.write_bytes(path.read_bytes())
    sent_anyway = client.upload(third, wait=True, wait_timeout=180)
    assert client.last_part_puts == 5
    assert sent_anyway.status == "ready" and sent_anyway.sha256 == first.sha256


def test_client_cancel_upload_ends_the_file_cancelled(
    client: Client, tmp_path: Path, state_dir: Path
) -> None:
    path = random_file(tmp_path, 40 * MIB)
    stop, progress = _stop_after(1)
    with pytest.raises(UploadPaused) as paused:
        client.upload(path, stop=stop, progress=progress)
    upload_id, file_id = paused.value.progress.upload_id, paused.value.progress.file_id
    assert upload_id is not None and file_id is not None

    client.cancel_upload(upload_id)

    assert client.wait_until_ready(file_id, timeout=60).status == "cancelled"
    assert list(state_dir.glob("*.json")) == []
    with pytest.raises(NotFoundError):
        client.cancel_upload(str(uuid.uuid4()))


def test_store_refuses_a_corrupted_part(stack: Settings, key_a: str, tmp_path: Path) -> None:
    path = random_file(tmp_path, 40 * MIB)
    part_one = path.read_bytes()[: 8 * MIB]
    auth = {"Authorization": f"Bearer {key_a}"}
    with httpx.Client(base_url=stack.api_url, headers=auth, timeout=60) as api:
        created = api.post(
            "/v1/uploads",
            json={
                "filename": "corrupt.bin",
                "size": 40 * MIB,
                "content_type": "application/octet-stream",
                "sha256": sha256_of(path),
            },
        ).json()
        assert created["method"] == "MULTIPART", created
        assert created["part_size"] == 8 * MIB
        signed = api.post(
            f"/v1/uploads/{created['upload_id']}/parts",
            json={
                "parts": [
                    {"part_number": 1, "sha256": b64_digest(hashlib.sha256(part_one).digest())}
                ]
            },
        )
        assert signed.status_code == 200, signed.text
        part = signed.json()["parts"][0]
        assert "x-amz-checksum-sha256" in {k.lower() for k in part["headers"]}
        corrupted = bytes([part_one[0] ^ 0xFF]) + part_one[1:]

        refused = httpx.put(part["url"], content=corrupted, headers=part["headers"], timeout=60)

        assert refused.status_code == 400, refused.text
        assert store_error(refused.status_code, refused.text).code == "BadDigest"
        assert api.get(f"/v1/uploads/{created['upload_id']}").json()["parts"] == []
        accepted = httpx.put(part["url"], content=part_one, headers=part["headers"], timeout=60)
        assert accepted.status_code == 200, accepted.text
        assert api.delete(f"/v1/uploads/{created['upload_id']}").status_code == 202


# --- the command line ---------------------------------------------------------------------


def test_client_stream_that_cannot_seek_uploads_and_is_cancelled_when_stopped(
    client: Client, state_dir: Path
) -> None:
    data = os.urandom(40 * MIB)  # in parts
    with _pipe_of(data) as stream:
        file = client.upload(stream, filename="piped.bin", wait=True, wait_timeout=180)
    assert (file.status, file.filename, file.size) == ("ready", "piped.bin", len(data)), file
    assert file.sha256 == hashlib.sha256(data).hexdigest()

    stop, progress = _stop_after(1)
    with _pipe_of(data) as stream, pytest.raises(UploadPaused) as stopped:
        client.upload(stream, stop=stop, progress=progress)
    assert not stopped.value.resumable
    upload_id, file_id = stopped.value.progress.upload_id, stopped.value.progress.file_id
    assert upload_id is not None and file_id is not None
    # Nothing could resume it: it is cancelled at once rather than left to expire.
    assert client.wait_until_ready(file_id, timeout=60).status == "cancelled"
    assert client.get_upload(upload_id).status == "cancelled"
    assert list(state_dir.glob("*.json")) == []


@contextlib.contextmanager
def _pipe_of(data: bytes) -> Iterator[BinaryIO]:
    """The read end of a pipe a thread fills with `data`, as a producer process would."""
    read_end, write_end = os.pipe()

    def write() -> None:
        with os.fdopen(write_end, "wb") as out:
            out.write(data)

    writer = threading.Thread(target=write)
    writer.start()
    with os.fdopen(read_end, "rb") as stream:
        yield stream
    writer.join()


def cli_env(stack: Settings, key: str, state_dir: Path | None = None) -> dict[str, str]:
    """The environment of a `conveyor` client command against the test stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(CONVEYOR_API_URL=stack.api_url, CONVEYOR_API_KEY=key)
    if state_dir is not None:
        env["CONVEYOR_CLIENT_STATE_DIR"] = str(state_dir)
    return env


def cli(
    stack: Settings, key: str, *args: str, state_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor_client.cli", *args],
        env=cli_env(stack, key, state_dir),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ctrl_c_once_parts_go(
    command: list[str], env: dict[str, str], state_dir: Path
) -> subprocess.CompletedProcess[str]:
    """Runs `command` as from a terminal and presses Ctrl-C once a multipart upload's resume
    state exists, that is while its parts are under way."""
    process = subprocess.Popen(
        command,
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a test run started in the background (a non-interactive
        # shell's `&`) hands its children SIGINT ignored, and Python then never sees Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not list(state_dir.glob("*.json")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.001)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_cli_upload_ls_get_rm_round_trip(stack: Settings, key_a: str, tmp_path: Path) -> None:
    marker = word()
    name = f"cli {marker}.txt"
    path = tmp_path / name
    path.write_bytes(sample_bytes(5000))

    uploaded = cli(stack, key_a, "upload", str(path), "--wait", "--json")
    assert uploaded.returncode == 0, uploaded.stderr
    [file] = json.loads(uploaded.stdout)
    assert file["status"] == "ready" and file["filename"] == name

    listed = cli(stack, key_a, "ls", marker, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [f["id"] for f in json.loads(listed.stdout)] == [file["id"]]
    assert name in cli(stack, key_a, "ls").stdout

    shown = cli(stack, key_a, "info", file["id"], "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["sha256"] == sha256_of(path)

    copy = tmp_path / "copy.txt"
    got = cli(stack, key_a, "get", file["id"], "-o", str(copy))
    assert got.returncode == 0, got.stderr
    assert copy.read_bytes() == path.read_bytes()

    removed = cli(stack, key_a, "rm", file["id"])
    assert removed.returncode == 0, removed.stderr
    assert cli(stack, key_a, "info", file["id"]).returncode == 4


def test_cli_uploads_standard_input_under_the_name_given(
    stack: Settings, key_a: str, tmp_path: Path
) -> None:
    path = random_file(tmp_path, 40 * MIB)  # in parts
    command = [sys.executable, "-m", "conveyor_client.cli", "upload", "-", "--name"]
    with open(path, "rb") as stdin:
        piped = subprocess.run(
            [*command, "backup.tar", "--wait", "--json"],
            stdin=stdin,
            env=cli_env(stack, key_a, tmp_path / "state"),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=240,
        )
    assert piped.returncode == 0, piped.stderr
    [file] = json.loads(piped.stdout)
    assert (file["status"], file["filename"], file["size"]) == ("ready", "backup.tar", 40 * MIB)
    assert file["sha256"] == sha256_of(path)

    renamed = cli(stack, key_a, "upload", str(path), "--name", "renamed.bin", "--json")
    assert renamed.returncode == 0, renamed.stderr
    assert json.loads(renamed.stdout)[0]["filename"] == "renamed.bin"


def test_cli_exit_codes_for_missing_file_bad_key_and_usage(stack: Settings, key_a: str) -> None:
    missing = cli(stack, key_a, "info", str(uuid.uuid4()))
    assert missing.returncode == 4, missing.stderr
    assert "Not found" in missing.stderr
    bad_key = cli(stack, "cvk_not_a_real_key", "ls")
    assert bad_key.returncode == 3, bad_key.stderr
    assert cli(stack, key_a, "upload", "/no/such/file").returncode == 2
    for usage in (
        ["-", "/etc/hostname"],
        ["/etc/hostname", "/etc/hosts", "--name", "x"],
        ["/etc/hostname", "--limit-rate", "lots"],
    ):
        wrong = cli(stack, key_a, "upload", *usage)
        assert wrong.returncode == 2 and "Invalid value" in wrong.stderr, wrong.stderr
    unreachable = cli(stack, key_a, "--api-url", "http://127.0.0.1:9", "ls")
    assert unreachable.returncode == 5, unreachable.stderr


def test_cli_ctrl_c_under_a_rate_limit_pauses_at_once_and_resumes(
    stack: Settings, key_a: str, tmp_path: Path, state_dir: Path
) -> None:
    path = random_file(tmp_path, 40 * MIB)
    env = cli_env(stack, key_a, state_dir)
    command = [sys.executable, "-m", "conveyor_client.cli", "upload", str(path), "--json"]
    started = time.monotonic()
    paused = ctrl_c_once_parts_go([*command, "--limit-rate", "1MiB"], env, state_dir)
    assert time.monotonic() - started < 30  # 40 s of sending at the limit, had it finished
    assert paused.returncode == 130, paused.stderr
    assert "the parts in flight go again on resume" in paused.stderr
    resumed = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)[0]["size"] == 40 * MIB


def test_cli_ctrl_c_pauses_and_the_same_command_resumes(
    stack: Settings, key_a: str, tmp_path: Path, state_dir: Path
) -> None:
    path = random_file(tmp_path, 64 * MIB)
    env = cli_env(stack, key_a, state_dir)
    command = [sys.executable, "-m", "conveyor_client.cli", "upload", str(path), "--json"]
    paused = ctrl_c_once_parts_go([*command, "--concurrency", "1", "--sha256"], env, state_dir)
    assert paused.returncode == 130, paused.stderr
    assert "resume" in paused.stderr
    [saved] = state_dir.glob("*.json")
    assert json.loads(saved.read_text())["part_checksum"] == "sha256"

    # Without --sha256 this time: the upload goes on with the checksums it began with.
    resumed = subprocess.run(
        [*command, "--wait"], env=env, cwd=REPO, capture_output=True, text=True, timeout=240
    )
    assert resumed.returncode == 0, resumed.stderr
    [file] = json.loads(resumed.stdout)
    assert file["status"] == "ready" and file["sha256"] == sha256_of(path)

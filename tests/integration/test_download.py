"""Downloads against the real stack: resumed from a partial file after an interruption or a
dropped connection (private files from the store, public ones through the CDN edge), a
damaged partial file fetched again, and bytes that differ from the file's SHA-256 refused."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from conveyor_client import Client, File, IntegrityError
from conveyor_client._download import partial_path
from conveyor_core.db.models import Blob
from conveyor_core.settings import Settings
from tests.integration.test_client import cli

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
SIZE = 24 * MIB  # one PUT: the file's bytes sit in one object


class Interrupt(Exception):
    """Stands for Ctrl-C or a killed process: it is not one the client handles."""


@pytest.fixture
def client(stack: Settings, key_a: str, tmp_path: Path) -> Iterator[Client]:
    with Client(stack.api_url, key_a, state_dir=tmp_path / "state") as c:
        yield c


def upload_random(client: Client, directory: Path, visibility: str = "private") -> File:
    path = directory / f"random-{visibility}.bin"
    path.write_bytes(os.urandom(SIZE))
    file = client.upload(path, visibility=visibility, wait=True, wait_timeout=120)
    assert file.status == "ready", file
    assert file.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    return file


def stop_after(limit: int, error: BaseException) -> Callable[[int, int], None]:
    """A progress callback that raises `error` once, when more than `limit` bytes arrived."""
    raised = False

    def report(done: int, _total: int) -> None:
        nonlocal raised
        if done > limit and not raised:
            raised = True
            raise error

    return report


@pytest.mark.parametrize("visibility", ["private", "public"])
def test_an_interrupted_download_resumes_from_its_partial_file(
    client: Client, tmp_path: Path, visibility: str
) -> None:
    file = upload_random(client, tmp_path, visibility)
    target = tmp_path / "out" / "copy.bin"
    target.parent.mkdir()

    with pytest.raises(Interrupt):
        client.download(file.id, target, progress=stop_after(SIZE // 3, Interrupt()))
    partial = partial_path(target, file.id)
    held = partial.stat().st_size
    assert SIZE // 3 < held < SIZE
    assert not target.exists()

    seen: list[int] = []
    assert client.download(file.id, target, progress=lambda d, t: seen.append(d)) == target

    assert hashlib.sha256(target.read_bytes()).hexdigest() == file.sha256
    assert not partial.exists()
    assert client.last_download is not None
    assert client.last_download.resumed_from == held
    assert client.last_download.bytes_received == SIZE - held  # only the rest was fetched
    assert seen[0] == held and seen[-1] == SIZE


def test_a_dropped_connection_is_retried_from_where_it_stopped(
    client: Client, tmp_path: Path
) -> None:
    file = upload_random(client, tmp_path)
    target = tmp_path / "copy.bin"

    drop = httpx.RemoteProtocolError("peer closed connection without sending complete body")
    client.download(file.id, target, progress=stop_after(SIZE // 2, drop))

    assert hashlib.sha256(target.read_bytes()).hexdigest() == file.sha256
    assert client.last_download is not None
    assert client.last_download.bytes_received == SIZE  # no byte fetched twice


def test_a_damaged_partial_file_is_fetched_again(client: Client, tmp_path: Path) -> None:
    file = upload_random(client, tmp_path)
    target = tmp_path / "copy.bin"
    partial = partial_path(target, file.id)
    partial.write_bytes(b"\0" * MIB)  # e.g. a disk error, or another file's bytes

    client.download(file.id, target)

    assert hashlib.sha256(target.read_bytes()).hexdigest() == file.sha256
    assert not partial.exists()
    assert client.last_download is not None
    assert client.last_download.bytes_received == 2 * SIZE - MIB


def test_bytes_that_differ_from_the_files_sha256_are_refused(
    client: Client,
    tmp_path: Path,
    stack: Settings,
    s3: S3Client,
    sessions: sessionmaker[Session],
) -> None:
    file = upload_random(client, tmp_path)
    with sessions() as session:
        blob = session.execute(select(Blob).where(Blob.sha256 == file.sha256)).scalar_one()
    # The object changes behind the platform's back (bit rot, or someone with store access).
    s3.put_object(Bucket=blob.bucket, Key=blob.object_key, Body=os.urandom(SIZE))
    target = tmp_path / "copy.bin"

    with pytest.raises(IntegrityError) as refused:
        client.download(file.id, target)

    assert refused.value.code == "checksum_mismatch"
    assert file.sha256 in refused.value.message
    assert not target.exists()
    assert not partial_path(target, file.id).exists()


def test_cli_get_json_writes_under_the_files_name(
    stack: Settings, key_a: str, client: Client, tmp_path: Path
) -> None:
    file = upload_random(client, tmp_path)
    out = tmp_path / "downloads"
    out.mkdir()

    got = cli(stack, key_a, "get", file.id, "-o", str(out), "--json")

    assert got.returncode == 0, got.stderr
    shown = json.loads(got.stdout)
    written = out / file.filename
    assert shown == {
        "id": file.id,
        "path": str(written),
        "size": SIZE,
        "sha256": file.sha256,
        "resumed_from": 0,
    }
    assert hashlib.sha256(written.read_bytes()).hexdigest() == file.sha256
    removed = cli(stack, key_a, "rm", file.id, "--json")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(removed.stdout) == {"id": file.id, "deleted": True}

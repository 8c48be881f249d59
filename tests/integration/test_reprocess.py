"""`conveyor reprocess` on the real stack: after a thumbnail size is added to the settings,
the batch workflow gives every ready image blob of the filter that size, in the store and in
its row, skips what is no image, continues as new, and its counters add up."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from activities.scan import clamd_instream
from conveyor_core.db.models import Blob
from conveyor_core.settings import Settings
from tests.helpers import assert_eventually
from tests.integration import samples
from tests.integration.conftest import REPO, create_key
from tests.integration.inspection import head_status
from tests.integration.test_file_events import read_stream
from tests.integration.uploads import auth, sample_bytes, upload
from workers.stack.environment import settings_env
from workers.stack.layout import StackLayout

NEW_SIZES = [64, 256, 1024]


def _reprocess(
    settings: Settings, *args: str, **env_overrides: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(settings_env(settings))
    env.update(env_overrides)
    return subprocess.run(
        [str(Path(sys.executable).parent / "conveyor"), "reprocess", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
    )


async def test_reprocess_thumbnails_gives_every_image_the_new_size(
    api: httpx.AsyncClient, stack: Settings, s3: Any, sessions: sessionmaker[Session]
) -> None:
    tenant = f"reprocess-{uuid.uuid4().hex[:8]}"  # a tenant of its own: the filter is exact
    key = create_key(stack, tenant)
    images = [samples.text_image(f"R{i}", size=(320, 120)) for i in range(4)]
    files = await asyncio.gather(
        *(upload(api, key, data, content_type="image/png", filename="r.png") for data in images),
        upload(api, key, sample_bytes(120), content_type="text/plain", filename="r.txt"),
    )
    assert all(f["status"] == "ready" for f in files), files
    image_files, text_file = files[:4], files[4]
    assert all(sorted(t["size"] for t in f["thumbnails"]) == [256, 1024] for f in image_files)

    ran = await asyncio.to_thread(
        _reprocess,
        stack,
        "--stage=thumbnails",
        f"--where=tenant={tenant}",
        "--page-size=2",
        "--pages-per-run=1",
        "--concurrency=2",
        "--id",
        tenant,
        "--json",
        CONVEYOR_THUMBNAIL_SIZES=json.dumps(NEW_SIZES),
    )

    assert ran.returncode == 0, ran.stderr
    counters = json.loads(ran.stdout)
    workflow_id = f"reprocess-thumbnails-{tenant}"
    assert counters["workflow_id"] == workflow_id
    assert counters["finished"] is True and counters["failures"] == []
    assert (counters["total"], counters["seen"]) == (5, 5)
    assert (counters["done"], counters["failed"], counters["skipped"]) == (4, 0, 1)
    assert counters["runs"] == 3  # pages of 2, 2 and 1: continued as new twice
    with sessions() as session:
        for file in image_files:
            blob = session.get(Blob, file["sha256"])
            assert blob is not None
            assert sorted(t["size"] for t in blob.thumbnails) == NEW_SIZES
            assert blob.stages["thumbnails"]["status"] == "succeeded"
            assert blob.stages["thumbnails"]["detail"] == "3 sizes"
            small = next(t for t in blob.thumbnails if t["size"] == 64)
            assert small["key"] == f"derivatives/{blob.sha256}/thumb-64.webp"
            assert (small["width"], small["height"]) == (64, 24)
            assert head_status(s3, blob.bucket, small["key"]) == 200
        text_blob = session.get(Blob, text_file["sha256"])
        assert text_blob is not None and text_blob.thumbnails == []
        assert text_blob.stages["thumbnails"]["status"] == "skipped"
    shown = (await api.get(f"/v1/files/{image_files[0]['id']}", headers=auth(key))).json()
    assert sorted(t["size"] for t in shown["thumbnails"]) == NEW_SIZES
    assert shown["stages"]["thumbnails"]["detail"] == "3 sizes"

    # The finished batch, looked up by its id.
    status = await asyncio.to_thread(_reprocess, stack, "--status", workflow_id, "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == counters
    human = await asyncio.to_thread(_reprocess, stack, "--status", workflow_id)
    assert human.returncode == 0
    assert f"{workflow_id} finished: 4 done, 0 failed, 1 skipped, 0 quarantined of 5 seen" in (
        human.stdout
    )


def test_reprocess_usage_errors_exit_2_and_unknown_batches_4(stack: Settings) -> None:
    for args in (
        ["--stage", "thumbnails", "--status", "reprocess-thumbnails-x"],
        ["--stage", "nope"],
        ["--stage", "thumbnails", "--where", "size>1"],
    ):
        ran = _reprocess(stack, *args)
        assert ran.returncode == 2, (args, ran.stdout, ran.stderr)
    unknown = _reprocess(stack, "--status", f"reprocess-thumbnails-{uuid.uuid4()}")
    assert unknown.returncode == 4 and "Not found" in unknown.stderr


def _clamd_reload(stack: Settings) -> None:
    """Has clamd read its signature databases again, as after a freshclam update."""
    with socket.create_connection(stack.clamd_address, timeout=30) as sock:
        sock.sendall(b"zRELOAD\0")
        assert sock.recv(64).startswith(b"RELOADING")


def _clamd_finds(stack: Settings, content: bytes, name: str) -> bool:
    reply = clamd_instream(stack.clamd_address, [content], lambda _: None)
    return name in reply


async def test_a_rescan_with_a_new_signature_takes_down_every_file_of_those_bytes(
    api: httpx.AsyncClient,
    stack: Settings,
    s3: Any,
    sessions: sessionmaker[Session],
) -> None:
    tenant = f"rescan-{uuid.uuid4().hex[:8]}"
    key = create_key(stack, tenant)
    # Tenants of their own: the shared test tenants must not hold quarantined files.
    key_b = create_key(stack, f"rescan-other-{uuid.uuid4().hex[:8]}")
    marker = uuid.uuid4().hex.encode()
    bad = b"quarterly report " + marker + b" end\n"
    good = b"clean words " + uuid.uuid4().hex.encode() + b"\n"
    public, clean = await asyncio.gather(
        upload(api, key, bad, filename="report.txt", visibility="public"),
        upload(api, key, good, filename="clean.txt"),
    )
    other = await upload(api, key_b, bad, filename="copy.txt")  # another tenant, same bytes
    assert [f["status"] for f in (public, clean, other)] == ["ready"] * 3
    async with httpx.AsyncClient() as plain:
        assert (await plain.get(public["cdn_url"])).status_code == 200
    with sessions() as session:
        held = session.get(Blob, public["sha256"])
        assert held is not None
        bucket, sealed_key = held.bucket, held.object_key

    # A new signature arrives (freshclam's job in production) and clamd reloads.
    name = f"Conveyor.Test.Rescan.{marker[:8].decode()}"
    signature = StackLayout.of(stack).clamav_db / "conveyor-rescan-test.ndb"
    signature.write_text(f"{name}:0:*:{marker.hex()}\n")
    try:
        await asyncio.to_thread(_clamd_reload, stack)

        async def reloaded() -> None:
            assert await asyncio.to_thread(_clamd_finds, stack, bad, name)

        await assert_eventually(reloaded, timeout=30)

        ran = await asyncio.to_thread(
            _reprocess, stack, "--stage=scan", f"--where=tenant={tenant}", "--id", tenant, "--json"
        )
    finally:
        signature.unlink()
        await asyncio.to_thread(_clamd_reload, stack)

    assert ran.returncode == 0, ran.stderr
    counters = json.loads(ran.stdout)
    assert (counters["seen"], counters["done"], counters["quarantined"]) == (2, 1, 1), counters
    verdict = f"infected: {name}.UNOFFICIAL"  # clamd marks signatures of ours so
    for file, owner in ((public, key), (other, key_b)):
        shown = (await api.get(f"/v1/files/{file['id']}", headers=auth(owner))).json()
        assert shown["status"] == "quarantined", shown
        assert shown["status_detail"] == verdict
        assert shown["stages"]["scan"]["detail"] == verdict and shown["cdn_url"] is None
        refused = await api.get(f"/v1/files/{file['id']}/content", headers=auth(owner))
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "file_quarantined"
        # Its events go on after those of its ingest: the scan's new verdict, then its status.
        events = await read_stream(api, owner, file["id"])
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        assert events[-2].data["stage"] == "scan" and events[-2].data["detail"] == verdict
        assert (events[-1].name, events[-1].data["status"]) == ("status", "quarantined")
    # The public copy is gone from the edge, the bytes from every client's reach.
    async with httpx.AsyncClient() as plain:
        assert (await plain.get(public["cdn_url"])).status_code == 404
    assert head_status(s3, bucket, sealed_key) == 404
    assert head_status(s3, stack.quarantine_bucket, public["sha256"]) == 200
    with sessions() as session:
        blob = session.get(Blob, public["sha256"])
        assert blob is not None and blob.status == "quarantined"
    # The clean file's scan ran again and says so; the file stays served.
    kept = (await api.get(f"/v1/files/{clean['id']}", headers=auth(key))).json()
    assert kept["status"] == "ready" and kept["stages"]["scan"]["status"] == "succeeded"

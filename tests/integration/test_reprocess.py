"""`conveyor reprocess` on the real stack: after a thumbnail size is added to the settings,
the batch workflow gives every ready image blob of the filter that size, in the store and in
its row, skips what is no image, continues as new, and its counters add up."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from conveyor_core.db.models import Blob
from conveyor_core.settings import Settings
from tests.integration import samples
from tests.integration.conftest import REPO, create_key
from tests.integration.inspection import head_status
from tests.integration.uploads import auth, sample_bytes, upload
from workers.stack.environment import settings_env

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
    assert f"{workflow_id} finished: 4 done, 0 failed, 1 skipped of 5 seen" in human.stdout


def test_reprocess_usage_errors_exit_2_and_unknown_batches_4(stack: Settings) -> None:
    for args in (
        ["--stage", "thumbnails", "--status", "reprocess-thumbnails-x"],
        ["--stage", "scan"],
        ["--stage", "thumbnails", "--where", "size>1"],
    ):
        ran = _reprocess(stack, *args)
        assert ran.returncode == 2, (args, ran.stdout, ran.stderr)
    unknown = _reprocess(stack, "--status", f"reprocess-thumbnails-{uuid.uuid4()}")
    assert unknown.returncode == 4 and "Not found" in unknown.stderr

"""A third party's stage, installed as a package with a `conveyor.stages` entry point (the
example in tests/stage_plugin_example): after a worker restart, the ingest plans it, runs it
on its own task queue with its own retry policy, shows it in the file JSON with the metadata
it wrote, and `conveyor reprocess --stage wordcount` re-runs it."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conveyor_core.settings import Settings
from tests.integration import samples
from tests.integration.conftest import create_key
from tests.integration.test_reprocess import _reprocess
from tests.integration.uploads import auth, upload
from workers.stack import manage

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[1] / "stage_plugin_example"
PACKAGE = "conveyor-example-stage"


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", *args], check=True, timeout=300)


def _restart_apps(stack: Settings) -> None:
    """The worker and the API read the installed stages when they start."""
    for program in ("worker", "api"):
        manage.supervisorctl(stack, "restart", program)
    healthz = f"http://{stack.host}:{stack.api_port}/healthz"
    deadline = time.monotonic() + 60
    while True:  # supervisord calls it running after 1 s; it listens once imported
        try:
            if httpx.get(healthz, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the API did not come back within 60 s"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def example_stage(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Built from a copy: a build leaves build/ and egg-info beside its sources.
    source = tmp_path_factory.mktemp("plugin") / "example"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    _pip("install", "--no-deps", str(source))
    try:
        _restart_apps(stack)
        yield
    finally:
        _pip("uninstall", "-y", PACKAGE)
        _restart_apps(stack)


async def test_an_installed_stage_runs_retried_on_its_queue_and_is_reprocessed(
    example_stage: None, api: httpx.AsyncClient, stack: Settings
) -> None:
    tenant = f"plugin-{uuid.uuid4().hex[:8]}"
    key = create_key(stack, tenant)
    text = b"one two three\nfour five\n"
    shown, image = await asyncio.gather(
        upload(api, key, text, content_type="text/plain", filename="words.txt"),
        upload(api, key, samples.text_image("W"), content_type="image/png", filename="w.png"),
    )

    assert shown["status"] == "ready", shown
    stage = shown["stages"]["wordcount"]
    # Its first attempt fails on purpose: the spec's retry policy ran it again.
    assert stage["status"] == "succeeded" and stage["detail"] == "5 words (attempt 2)", stage
    expected = {
        "words": 5,
        "lines": 2,
        "counted_by": "IngestWorkflow",
        "counted_on": "example-wordcount",  # the stage's own task queue
    }
    assert {k: shown["metadata"].get(k) for k in expected} == expected, shown["metadata"]
    assert shown["metadata"]["charset"] == "utf-8"  # the text stage's, beside it
    # The built-in stages still ran as before, beside it.
    assert shown["stages"]["scan"]["status"] == "succeeded"
    assert shown["stages"]["ocr"]["detail"] == "no OCR for text/plain"
    assert image["status"] == "ready"
    assert image["stages"]["wordcount"] == {
        "status": "skipped",
        "detail": "no word count for image/png",
        "duration_ms": 0,
    }

    ran = await asyncio.to_thread(
        _reprocess, stack, "--stage=wordcount", f"--where=tenant={tenant}", "--json"
    )
    assert ran.returncode == 0, ran.stderr
    counters = json.loads(ran.stdout)
    assert counters["finished"] and counters["failures"] == [], counters
    assert (counters["done"], counters["skipped"]) == (1, 1), counters
    again = (await api.get(f"/v1/files/{shown['id']}", headers=auth(key))).json()
    assert again["metadata"]["counted_by"] == "ReprocessWorkflow", again
    assert again["stages"]["wordcount"]["detail"] == "5 words (attempt 2)"

"""How many activities a worker runs at once per queue."""

from __future__ import annotations

import os

from conveyor_core.settings import Settings


def test_media_jobs_run_one_per_core_and_one_more_unless_set() -> None:
    # Thumbnails and OCR keep a core busy each; one slot more lets short jobs pass.
    assert Settings().media_concurrency == (os.cpu_count() or 1) + 1
    assert Settings(worker_media_concurrent_activities=3).media_concurrency == 3

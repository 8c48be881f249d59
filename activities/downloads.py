"""A blob's bytes to a local file, for the stages that hand them to a program."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from conveyor_core.types import BlobRef

CHUNK_SIZE = 1024 * 1024


def download_blob(s3: Any, blob: BlobRef, dest: Path, beat: Callable[[], None]) -> None:
    """Streams the object to `dest`, calling `beat` on every chunk (the SDK throttles
    heartbeats), so a worker that dies mid-way is noticed within the heartbeat timeout."""
    body = s3.get_object(Bucket=blob.bucket, Key=blob.key)["Body"]
    try:
        with dest.open("wb") as out:
            for chunk in body.iter_chunks(CHUNK_SIZE):
                out.write(chunk)
                beat()
    finally:
        body.close()

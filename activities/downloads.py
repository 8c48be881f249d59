"""A blob's bytes to a local file, for the stages that hand them to a program."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from conveyor_core.types import BlobRef

CHUNK_SIZE = 1024 * 1024

# Set inside a batch of stages: the folder that keeps each blob downloaded once.
_SHARED: ContextVar[Path | None] = ContextVar("conveyor_shared_downloads", default=None)


@contextmanager
def shared_downloads() -> Iterator[None]:
    """Within it (one thread: a batch of stages), a blob is fetched from the store once and
    every download_blob of it gets a copy of its own, which a stage may change or move."""
    with tempfile.TemporaryDirectory(prefix="conveyor-batch-") as tmp:
        token = _SHARED.set(Path(tmp))
        try:
            yield
        finally:
            _SHARED.reset(token)


def download_blob(s3: Any, blob: BlobRef, dest: Path, beat: Callable[[], None]) -> None:
    """Streams the object to `dest`, calling `beat` on every chunk (the SDK throttles
    heartbeats), so a worker that dies mid-way is noticed within the heartbeat timeout."""
    shared = _SHARED.get()
    if shared is None:
        _fetch(s3, blob, dest, beat)
        return
    kept = shared / hashlib.sha256(f"{blob.bucket}/{blob.key}".encode()).hexdigest()
    if not kept.exists():
        partial = kept.with_suffix(".partial")
        _fetch(s3, blob, partial, beat)
        partial.rename(kept)
    shutil.copyfile(kept, dest)


def _fetch(s3: Any, blob: BlobRef, dest: Path, beat: Callable[[], None]) -> None:
    body = s3.get_object(Bucket=blob.bucket, Key=blob.key)["Body"]
    try:
        with dest.open("wb") as out:
            for chunk in body.iter_chunks(CHUNK_SIZE):
                out.write(chunk)
                beat()
    finally:
        body.close()

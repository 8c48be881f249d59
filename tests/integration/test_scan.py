"""The scan stage against the real clamd and object store of the test stack."""

from __future__ import annotations

import io
import os
import socket
import tracemalloc
import zipfile

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.scan import ScanActivities
from conveyor_core.settings import Settings
from conveyor_core.types import (
    SCAN_TOO_LARGE_ERROR,
    SCANNER_ERROR,
    BlobRef,
    ScanInput,
    ScanResult,
)
from workers.stack.signatures import EICAR_SIGNATURE_NAME, eicar

pytestmark = pytest.mark.integration

SIGNATURE = f"{EICAR_SIGNATURE_NAME}.UNOFFICIAL"


def scan(s3, settings: Settings, blob: BlobRef) -> ScanResult:  # type: ignore[no-untyped-def]
    activities = ScanActivities(s3, settings)
    return ActivityEnvironment().run(activities.scan_blob, ScanInput(blob=blob))


def zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_scan_clean_text_file_is_clean(stack: Settings, s3, blob_in_store) -> None:  # type: ignore[no-untyped-def]
    blob = blob_in_store(
        b"Quarterly report\nnothing to see here\n" * 100, "application/octet-stream"
    )

    assert scan(s3, stack, blob) == ScanResult(infected=False, signature=None, detail="clean")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(eicar(), id="bare"),
        pytest.param(b"some text before\n" + eicar() + b"\nand after", id="prefix-suffix"),
        pytest.param(zipped("docs/readme.txt", eicar()), id="zip"),
    ],
)
def test_scan_eicar_is_infected(stack: Settings, s3, blob_in_store, data: bytes) -> None:  # type: ignore[no-untyped-def]
    blob = blob_in_store(data, "application/octet-stream")

    result = scan(s3, stack, blob)

    assert result == ScanResult(infected=True, signature=SIGNATURE, detail=f"infected: {SIGNATURE}")


def test_scan_over_the_limit_is_too_large(stack: Settings, s3, blob_in_store) -> None:  # type: ignore[no-untyped-def]
    small_limit = stack.model_copy(update={"scan_max_bytes": 1024})
    blob = blob_in_store(os.urandom(2048), "application/octet-stream")

    with pytest.raises(ApplicationError) as caught:
        scan(s3, small_limit, blob)

    assert caught.value.type == SCAN_TOO_LARGE_ERROR
    assert caught.value.non_retryable is True
    assert caught.value.message == "too large to scan (2048 bytes, limit 1024)"


def test_scan_unreachable_clamd_is_retryable(stack: Settings, s3, blob_in_store) -> None:  # type: ignore[no-untyped-def]
    port = closed_port()
    no_clamd = stack.model_copy(update={"clamd_port": port})
    blob = blob_in_store(b"hello", "application/octet-stream")

    with pytest.raises(ApplicationError) as caught:
        scan(s3, no_clamd, blob)

    assert caught.value.type == SCANNER_ERROR
    assert caught.value.non_retryable is False
    assert f"clamd at 127.0.0.1:{port} is unreachable" in caught.value.message


def test_scan_missing_object_fails_for_good(stack: Settings, s3, blob_in_store) -> None:  # type: ignore[no-untyped-def]
    blob = blob_in_store(b"soon gone", "application/octet-stream")
    s3.delete_object(Bucket=blob.bucket, Key=blob.key)

    with pytest.raises(ApplicationError) as caught:
        scan(s3, stack, blob)

    assert caught.value.non_retryable is True
    assert caught.value.message == "the object is no longer in the store"


def test_scan_large_object_streams_in_bounded_memory(stack: Settings, s3, blob_in_store) -> None:  # type: ignore[no-untyped-def]
    size = 30 * 1024 * 1024
    blob = blob_in_store(os.urandom(size), "application/octet-stream")

    tracemalloc.start()
    try:
        result = scan(s3, stack, blob)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result == ScanResult(infected=False, detail="clean")
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes: the object was not streamed"

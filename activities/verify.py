"""Verify stage: one streaming pass over the object for SHA-256, real size and sniffed type."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import TYPE_CHECKING

import magic
from botocore.exceptions import ClientError
from temporalio import activity

from activities.heartbeat import beat
from conveyor_core.types import VerifyInput, VerifyResult
from observability.metrics import BYTES_VERIFIED

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)
CHUNK_SIZE = 1024 * 1024
SNIFF_BYTES = 64 * 1024
HEARTBEAT_EVERY_SECONDS = 5.0


# An MPEG transport stream, which libmagic does not name: a sync byte at the start of every
# packet of 188 bytes (TS), or of 192 bytes behind a 4-byte timestamp (M2TS, Blu-ray and
# AVCHD cameras). Ten packets in a row are no accident.
MPEG_TS = "video/mp2t"
_TS_SYNC = 0x47
_TS_LAYOUTS = ((188, 0), (192, 4))  # (packet size, offset of the sync byte)
_TS_PACKETS = 10


def sniff_content_type(head: bytes) -> str:
    if not head:
        return "application/x-empty"
    sniffed = str(magic.from_buffer(head, mime=True))
    if sniffed == "application/octet-stream" and _is_transport_stream(head):
        return MPEG_TS
    return sniffed


def _is_transport_stream(head: bytes) -> bool:
    return any(
        len(head) >= size * _TS_PACKETS
        and all(head[offset + size * n] == _TS_SYNC for n in range(_TS_PACKETS))
        for size, offset in _TS_LAYOUTS
    )


class VerifyActivities:
    def __init__(self, s3: S3Client) -> None:
        self._s3 = s3

    @activity.defn(name="verify_object")
    def verify_object(self, inp: VerifyInput) -> VerifyResult:
        try:
            response = self._s3.get_object(Bucket=inp.bucket, Key=inp.key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return VerifyResult(
                    ok=False, detail="the object is no longer in the store", missing=True
                )
            raise
        digest = hashlib.sha256()
        head = bytearray()
        size = 0
        last_beat = time.monotonic()
        body = response["Body"]
        try:
            for chunk in body.iter_chunks(CHUNK_SIZE):
                digest.update(chunk)
                size += len(chunk)
                if len(head) < SNIFF_BYTES:
                    head += chunk[: SNIFF_BYTES - len(head)]
                if time.monotonic() - last_beat > HEARTBEAT_EVERY_SECONDS:
                    beat(size)
                    last_beat = time.monotonic()
        finally:
            body.close()
        BYTES_VERIFIED.inc(size)
        sha256 = digest.hexdigest()
        content_type = sniff_content_type(bytes(head))
        detail = _mismatch(inp, size, sha256)
        log.info(
            "verified %s: %d bytes, %s, %s", inp.key, size, content_type, detail or "as declared"
        )
        return VerifyResult(
            ok=detail is None,
            detail=detail,
            sha256=sha256,
            size=size,
            content_type=content_type,
            etag=response.get("ETag"),
        )


def _mismatch(inp: VerifyInput, size: int, sha256: str) -> str | None:
    if inp.size_is_limit:
        if size > inp.declared_size:
            return f"too large: at most {inp.declared_size} bytes, the object has {size}"
    elif size != inp.declared_size:
        return f"size mismatch: declared {inp.declared_size} bytes, the object has {size}"
    if inp.declared_sha256 is not None and sha256 != inp.declared_sha256:
        return f"sha256 mismatch: declared {inp.declared_sha256}, the object hashes to {sha256}"
    return None

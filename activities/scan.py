"""Scan stage: stream the object from the store into clamd's INSTREAM, never whole in memory.

clamd's protocol is spoken by hand (`clamd_instream`): the command `zINSTREAM\\0`, then chunks
each prefixed by its length as a 4-byte big-endian integer, a zero-length chunk to end, and
one NUL-terminated reply such as `stream: OK` or `stream: <Name> FOUND`.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import beat
from conveyor_core.settings import Settings
from conveyor_core.types import (
    SCAN_TOO_LARGE_ERROR,
    SCAN_UNSCANNABLE_ERROR,
    SCANNER_ERROR,
    ScanInput,
    ScanResult,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CHUNK_SIZE = 1024 * 1024
HEARTBEAT_EVERY_SECONDS = 5.0
# A connect or a single send that stalls this long means clamd is stuck or gone.
IO_TIMEOUT_SECONDS = 30.0
# clamd scans only after the last chunk; a big archive may take minutes (we heartbeat meanwhile).
REPLY_TIMEOUT_SECONDS = 600.0
MAX_REPLY_BYTES = 4096

_LENGTH = struct.Struct("!L")


class ClamdError(Exception):
    """clamd could not be reached or did not answer properly: transient, worth a retry."""


def clamd_instream(
    address: tuple[str, int], chunks: Iterable[bytes], beat: Callable[[int], None]
) -> str:
    """Send `chunks` to clamd with INSTREAM and return its reply, e.g. `stream: OK`.

    `beat(bytes_sent)` is called after every chunk and while waiting for the verdict.
    Raises ClamdError when clamd is unreachable, stalls or hangs up without a reply.
    """
    host, port = address
    try:
        sock = socket.create_connection(address, timeout=IO_TIMEOUT_SECONDS)
    except OSError as e:
        raise ClamdError(f"clamd at {host}:{port} is unreachable: {e}") from e
    with sock:
        sent = 0
        if _send(sock, b"zINSTREAM\0"):
            for chunk in chunks:
                if not _send(sock, _LENGTH.pack(len(chunk)) + chunk):
                    break  # clamd hung up early (e.g. its size limit); its reply says why
                sent += len(chunk)
                beat(sent)
            else:
                _send(sock, _LENGTH.pack(0))
        return _read_reply(sock, lambda: beat(sent))


def _send(sock: socket.socket, data: bytes) -> bool:
    """False if clamd closed the connection (it may have written a reply first)."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        return False
    except OSError as e:
        raise ClamdError(f"sending to clamd failed: {e}") from e
    return True


def _read_reply(sock: socket.socket, beat: Callable[[], None]) -> str:
    sock.settimeout(HEARTBEAT_EVERY_SECONDS)
    deadline = time.monotonic() + REPLY_TIMEOUT_SECONDS
    reply = b""
    while not reply.endswith(b"\0") and len(reply) < MAX_REPLY_BYTES:
        try:
            data = sock.recv(MAX_REPLY_BYTES)
        except TimeoutError:
            if time.monotonic() > deadline:
                raise ClamdError(
                    f"clamd gave no verdict in {REPLY_TIMEOUT_SECONDS:.0f} s"
                ) from None
            beat()
            continue
        except OSError as e:
            raise ClamdError(f"reading clamd's reply failed: {e}") from e
        if not data:
            break
        reply += data
    if not reply:
        raise ClamdError("clamd closed the connection without a reply")
    return reply.rstrip(b"\0").decode("utf-8", "replace").strip()


def too_large(size: int, limit: int) -> ApplicationError:
    return ApplicationError(
        f"too large to scan ({size} bytes, limit {limit})",
        type=SCAN_TOO_LARGE_ERROR,
        non_retryable=True,
    )


# clamd.conf sets AlertExceedsMax: what could not be scanned whole is reported, not passed.
LIMITS_EXCEEDED = "Heuristics.Limits.Exceeded"
# Sniffed types whose members clamd extracts: past a limit, they are not passed unscanned.
ARCHIVE_TYPES = frozenset(
    {
        "application/zip",
        "application/gzip",
        "application/x-gzip",
        "application/x-tar",
        "application/x-bzip2",
        "application/x-xz",
        "application/x-7z-compressed",
        "application/x-rar",
        "application/vnd.rar",
        "application/x-rar-compressed",
        "application/java-archive",
        "application/vnd.ms-cab-compressed",
        "application/x-iso9660-image",
        "application/zstd",
    }
)


def is_archive(content_type: str) -> bool:
    return content_type in ARCHIVE_TYPES or content_type.endswith(("+zip", "-compressed"))


def verdict(reply: str, size: int, limit: int, content_type: str = "") -> ScanResult:
    """Turn clamd's reply into a result; raise for a size limit or a scanner error."""
    if reply == "stream: OK":
        return ScanResult(infected=False, detail="clean")
    if reply.startswith("stream: ") and reply.endswith(" FOUND"):
        name = reply.removeprefix("stream: ").removesuffix(" FOUND")
        if name.startswith(LIMITS_EXCEEDED):
            limit_name = name.removeprefix(LIMITS_EXCEEDED).strip(".") or "a limit"
            if not is_archive(content_type):
                # Not an archive: clamd went past a limit on what it thought it found
                # embedded (random-looking data does that); the file itself was scanned.
                return ScanResult(infected=False, detail=f"clean (clamd reached {limit_name})")
            raise ApplicationError(
                f"cannot be scanned whole: it expands past the scanner's {limit_name} "
                "(an archive bomb, or an archive too large to check)",
                type=SCAN_UNSCANNABLE_ERROR,
                non_retryable=True,
            )
        return ScanResult(infected=True, signature=name, detail=f"infected: {name}")
    if "size limit exceeded" in reply:
        raise too_large(size, limit)
    raise ClamdError(f"clamd answered {reply!r}")


class ScanActivities:
    def __init__(self, s3: S3Client, settings: Settings) -> None:
        self._s3 = s3
        self._settings = settings

    @activity.defn(name="scan_blob")
    def scan_blob(self, inp: ScanInput) -> ScanResult:
        blob, limit = inp.blob, self._settings.scan_max_bytes
        if blob.size > limit:
            raise too_large(blob.size, limit)
        try:
            response = self._s3.get_object(Bucket=blob.bucket, Key=blob.key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ApplicationError(
                    "the object is no longer in the store", type=SCANNER_ERROR, non_retryable=True
                ) from e
            raise
        body = response["Body"]
        try:
            reply = clamd_instream(
                self._settings.clamd_address, body.iter_chunks(CHUNK_SIZE), _Heartbeat()
            )
            return verdict(reply, blob.size, limit, blob.content_type)
        except ClamdError as e:
            raise ApplicationError(f"scanner error: {e}", type=SCANNER_ERROR) from e
        finally:
            body.close()


class _Heartbeat:
    """Reports bytes sent to clamd, at most once every HEARTBEAT_EVERY_SECONDS."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def __call__(self, sent: int) -> None:
        if time.monotonic() - self._last >= HEARTBEAT_EVERY_SECONDS:
            beat(sent)
            self._last = time.monotonic()

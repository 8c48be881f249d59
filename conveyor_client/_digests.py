"""What an upload declares before it starts: the whole file's checksum and its parts'.

With SHA-256 parts, the file's SHA-256 (which makes an instant `DEDUPLICATED` possible) is
sequential, so it runs on a thread of its own while the calling thread hashes the parts:
the pass takes about one hash's time instead of two (hashlib lets go of the GIL while it
hashes). With CRC64NVME parts, one thread computes each part's CRC, about 40 ms per GiB,
and combines them into the whole file's without reading it again. Reads go into a buffer
that is reused, not a new bytes object per read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from awscrt import checksums

from conveyor_client._checksums import Hasher, PartChecksum, new_hasher
from conveyor_client._source import CHUNK, PartRange, Source, b64_digest


@dataclass(frozen=True)
class Digests:
    """The file's hex SHA-256 (SHA-256 parts) or base64 CRC64NVME (CRC64NVME parts), and
    each part's base64 checksum by part number (empty when no part layout was asked for)."""

    sha256: str | None
    crc64nvme: str | None
    parts: dict[int, str]


class _Cancelled(Exception):
    """Internal: the other thread failed or the user asked to stop."""


def file_digests(
    source: Source,
    ranges: list[PartRange] | None,
    stop: threading.Event | None = None,
    *,
    part_checksum: PartChecksum = "sha256",
) -> Digests:
    """Hashes the whole file and, given `ranges`, each part with `part_checksum`.

    Raises:
        KeyboardInterrupt: `stop` was set (or Ctrl-C pressed) before the hashing finished.
        OSError: The file could not be read or became shorter.
    """
    if part_checksum == "crc64nvme":
        return _crc_digests(source, ranges or [PartRange(1, 0, source.size)], stop)
    cancel = threading.Event()
    whole: list[str] = []
    failure: list[BaseException] = []

    def hash_whole() -> None:
        try:
            whole.append(_hash_range(source, 0, source.size, cancel).digest().hex())
        except _Cancelled:
            pass
        except BaseException as e:  # handed to the calling thread, which raises it
            failure.append(e)
            cancel.set()

    helper = threading.Thread(target=hash_whole, name="conveyor-sha256", daemon=True)
    helper.start()
    parts: dict[int, str] = {}
    try:
        for part in ranges or []:
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
            digest = _hash_range(source, part.start, part.end, cancel, stop)
            parts[part.number] = b64_digest(digest.digest())
        while helper.is_alive():
            helper.join(0.1)  # a bounded join, so Ctrl-C and `stop` are seen while it runs
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
    except _Cancelled:
        pass  # the helper failed; its error is raised below
    finally:
        cancel.set()
        helper.join()
    if failure:
        raise failure[0]
    return Digests(sha256=whole[0], crc64nvme=None, parts=parts)


def _crc_digests(source: Source, ranges: list[PartRange], stop: threading.Event | None) -> Digests:
    parts: dict[int, str] = {}
    whole = 0
    for part in ranges:
        crc = _hash_range(source, part.start, part.end, None, stop, "crc64nvme").digest()
        whole = checksums.combine_crc64nvme(whole, int.from_bytes(crc, "big"), part.size)
        parts[part.number] = b64_digest(crc)
    return Digests(sha256=None, crc64nvme=b64_digest(whole.to_bytes(8, "big")), parts=parts)


def _hash_range(
    source: Source,
    start: int,
    end: int,
    cancel: threading.Event | None,
    stop: threading.Event | None = None,
    algorithm: PartChecksum = "sha256",
) -> Hasher:
    """The hash of bytes [start, end)."""
    digest = new_hasher(algorithm)
    view = memoryview(bytearray(min(CHUNK, max(1, end - start))))
    position = start
    while position < end:
        if cancel is not None and cancel.is_set():
            raise _Cancelled
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt
        read = source.read_into(position, view[: min(len(view), end - position)])
        if not read:
            raise OSError(f"{source.name} is shorter than when the upload started")
        digest.update(view[:read])
        position += read
    return digest

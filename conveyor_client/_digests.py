"""The file's SHA-256 and its parts' SHA-256s before an upload is declared, on two threads.

The whole-file hash is sequential, so it runs on a thread of its own while the calling
thread hashes the parts: the pass takes about one hash's time instead of two (hashlib lets
go of the GIL while it hashes). Reads go into a buffer that is reused, not a new bytes
object per read.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

from conveyor_client._source import CHUNK, PartRange, Source, b64_digest


@dataclass(frozen=True)
class Digests:
    """What the create call declares: the file's hex SHA-256, and each part's base64
    SHA-256 by part number (empty when no part layout was asked for)."""

    sha256: str
    parts: dict[int, str]


class _Cancelled(Exception):
    """Internal: the other thread failed or the user asked to stop."""


def file_digests(
    source: Source, ranges: list[PartRange] | None, stop: threading.Event | None = None
) -> Digests:
    """Hashes the whole file and, given `ranges`, each part.

    Raises:
        KeyboardInterrupt: `stop` was set (or Ctrl-C pressed) before the hashing finished.
        OSError: The file could not be read or became shorter.
    """
    cancel = threading.Event()
    whole: list[str] = []
    failure: list[BaseException] = []

    def hash_whole() -> None:
        try:
            whole.append(_hash_range(source, 0, source.size, cancel).hexdigest())
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
    return Digests(sha256=whole[0], parts=parts)


def _hash_range(
    source: Source,
    start: int,
    end: int,
    cancel: threading.Event,
    stop: threading.Event | None = None,
) -> hashlib._Hash:
    digest = hashlib.sha256()
    view = memoryview(bytearray(min(CHUNK, max(1, end - start))))
    position = start
    while position < end:
        if cancel.is_set():
            raise _Cancelled
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt
        read = source.read_into(position, view[: min(len(view), end - position)])
        if not read:
            raise OSError(f"{source.name} is shorter than when the upload started")
        digest.update(view[:read])
        position += read
    return digest

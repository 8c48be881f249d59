"""What an interrupted `conveyor upload` of several files already finished, so the same
command run again sends only the rest (and does not make the finished files twice).

One JSON file per command under `<state dir>/batches/`, named by the command's files (each
by path, size and mtime, as an upload's own resume state is), the API, the key and the
options; it maps each finished file to its id. It is removed once every file went.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Mapping
from pathlib import Path

from conveyor_client._state import state_key, write_json_atomically


def _file_key(path: Path, api_url: str) -> str:
    stat = path.stat()
    return state_key(path.resolve(), stat.st_size, stat.st_mtime_ns, api_url)


class FinishedUploads:
    """The files of one command already uploaded, by the command's earlier runs or this one.

    Args:
        directory: The client's state directory.
        paths: The command's files.
        api_url: The API they go to.
        api_key: The key they go with (only its hash is kept).
        options: Whatever else makes the command another one (visibility, checksums).
    """

    def __init__(
        self,
        directory: Path,
        paths: list[Path],
        api_url: str,
        api_key: str,
        options: Mapping[str, object],
    ) -> None:
        self._keys = {path: _file_key(path, api_url) for path in paths}
        command = json.dumps(
            [
                sorted(self._keys.values()),
                hashlib.sha256(api_key.encode()).hexdigest(),
                dict(sorted(options.items())),
            ]
        )
        name = hashlib.sha256(command.encode()).hexdigest()[:40]
        self.path = directory / "batches" / f"{name}.json"
        self._lock = threading.Lock()
        self._done: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(self.path.read_text())
            if isinstance(loaded, dict):
                self._done = {str(k): str(v) for k, v in loaded.items()}

    def file_id(self, path: Path) -> str | None:
        """The id of `path`'s file if an earlier run of this command uploaded it."""
        return self._done.get(self._keys[path])

    def record(self, path: Path, file_id: str) -> None:
        """Remembers that `path` went, as file `file_id` (thread-safe)."""
        with self._lock:
            self._done[self._keys[path]] = file_id
            write_json_atomically(self.path, self._done)

    def forget(self, path: Path) -> None:
        """`path`'s file is gone since: the next run sends it again."""
        with self._lock:
            if self._done.pop(self._keys[path], None) is not None:
                write_json_atomically(self.path, self._done)

    def clear(self) -> None:
        """Every file went: nothing to remember."""
        with self._lock, contextlib.suppress(FileNotFoundError):
            self.path.unlink()

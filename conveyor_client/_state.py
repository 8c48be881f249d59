"""Resume state: one small JSON file per multipart upload, keyed by the file and the API.

The key is the file's absolute path, size and mtime_ns plus the API URL, so a changed file
(or another server) never resumes someone else's upload. Writes are atomic (temp file, then
rename), so a process killed mid-write leaves the previous state intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conveyor_client._checksums import PART_CHECKSUMS, PartChecksum

DEFAULT_STATE_DIR = Path("~/.cache/conveyor/uploads")
# 2: part checksums kept up front, parts no longer saved one by one.
# 3: the part checksum's algorithm (CRC64NVME or SHA-256) and the whole file's CRC64NVME.
VERSION = 3


def default_state_dir() -> Path:
    """`$CONVEYOR_CLIENT_STATE_DIR`, else `~/.cache/conveyor/uploads` (honouring XDG_CACHE_HOME)."""
    if env := os.environ.get("CONVEYOR_CLIENT_STATE_DIR"):
        return Path(env).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg) / "conveyor" / "uploads"
    return DEFAULT_STATE_DIR.expanduser()


def state_key(path: Path, size: int, mtime_ns: int, api_url: str) -> str:
    """The name of the state file for this file on this API."""
    identity = json.dumps([str(path), size, mtime_ns, api_url.rstrip("/")])
    return hashlib.sha256(identity.encode()).hexdigest()[:40]


@dataclass
class FinishedPart:
    """A part the store acknowledged: its etag and base64 checksum."""

    etag: str
    checksum: str


@dataclass
class UploadState:
    """What a resumed upload needs to know: saved when the upload is made (with every part
    checksum the client already has), when more checksums are computed, and when sending
    stops. Which parts the store holds is asked of the server on resume, not kept here: its
    list is the truth, and a state written after every part cost CPU the store needed."""

    api_url: str
    path: str
    size: int
    mtime_ns: int
    upload_id: str
    file_id: str
    part_size: int
    part_count: int
    sha256: str | None  # hex, when declared
    part_checksum: PartChecksum = "sha256"
    crc64nvme: str | None = None  # the whole file's, base64, checked when completing
    parts: dict[int, FinishedPart] = field(default_factory=dict)
    checksums: dict[int, str] = field(default_factory=dict)  # part number → base64 checksum
    version: int = VERSION

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored on disk (part numbers become string keys)."""
        data = asdict(self)
        data["parts"] = {str(n): asdict(p) for n, p in sorted(self.parts.items())}
        data["checksums"] = {str(n): c for n, c in sorted(self.checksums.items())}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UploadState:
        """Reads a stored object; raises KeyError/TypeError/ValueError when malformed."""
        version = data.get("version")
        if version == 2:  # SHA-256 parts; a finished part's checksum was called sha256
            data = {**data, "part_checksum": "sha256"}
            data["parts"] = {
                n: {"etag": p["etag"], "checksum": p["sha256"]}
                for n, p in dict(data.get("parts") or {}).items()
            }
        elif version != VERSION:
            raise ValueError(f"unknown state version {version!r}")
        if data.get("part_checksum", "sha256") not in PART_CHECKSUMS:
            raise ValueError(f"unknown part checksum {data.get('part_checksum')!r}")
        parts = {int(n): FinishedPart(**p) for n, p in dict(data.get("parts") or {}).items()}
        checksums = {int(n): str(c) for n, c in dict(data.get("checksums") or {}).items()}
        nested = ("parts", "checksums", "version")
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k not in nested and k in data}
        return cls(**fields, parts=parts, checksums=checksums)


def write_json_atomically(path: Path, data: Any) -> None:
    """Writes `data` as JSON to `path` by a temporary file and a rename, so a process killed
    mid-write leaves the previous content whole (the directory is made, private, if new)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = json.dumps(data, indent=1, sort_keys=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class StateStore:
    """State files under one directory; thread-safe saves of one upload's state."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()

    def path_for(self, key: str) -> Path:
        """Where the state with this key lives."""
        return self.directory / f"{key}.json"

    def load(self, key: str) -> UploadState | None:
        """The saved state, or None when there is none or it is unreadable."""
        try:
            data = json.loads(self.path_for(key).read_text())
            return UploadState.from_json(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            # A damaged state only costs a fresh upload; never block the user on it.
            return None

    def save(self, key: str, state: UploadState) -> None:
        """Writes the state atomically."""
        with self._lock:
            write_json_atomically(self.path_for(key), state.to_json())

    def remove(self, key: str) -> None:
        """Deletes the state (the upload completed or is gone)."""
        with self._lock, contextlib.suppress(FileNotFoundError):
            self.path_for(key).unlink()

    def superseded(self, path: Path, api_url: str, key: str) -> dict[str, UploadState]:
        """The other states of `path` with the same API, by key: uploads of the file as it
        was before it changed (another size or mtime), which nothing will resume."""
        found = {}
        for candidate in self.directory.glob("*.json"):
            other = candidate.stem
            state = self.load(other) if other != key else None
            if state is not None and state.path == str(path) and state.api_url == api_url:
                found[other] = state
        return found

"""Resume state files of the client (pure logic, on a temporary directory)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from conveyor_client._state import (
    FinishedPart,
    StateStore,
    UploadState,
    default_state_dir,
    state_key,
)


def _state() -> UploadState:
    return UploadState(
        api_url="http://127.0.0.1:8000",
        path="/data/big.iso",
        size=100,
        mtime_ns=123,
        upload_id="u-1",
        file_id="f-1",
        part_size=40,
        part_count=3,
        sha256="ab" * 32,
        parts={2: FinishedPart(etag='"e2"', checksum="c2E="), 1: FinishedPart('"e1"', "c2F=")},
        checksums={3: "c2G=", 1: "c2F=", 2: "c2E="},
    )


def test_state_round_trips_through_disk(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "states")
    store.save("k", _state())
    loaded = store.load("k")
    assert loaded == _state()
    raw = json.loads(store.path_for("k").read_text())
    assert list(raw["parts"]) == ["1", "2"]
    assert raw["checksums"] == {"1": "c2F=", "2": "c2E=", "3": "c2G="}
    assert list(tmp_path.joinpath("states").iterdir()) == [store.path_for("k")]  # no temp left


def test_state_remove_and_missing(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert store.load("nothing") is None
    store.save("k", _state())
    store.remove("k")
    store.remove("k")  # twice is harmless
    assert store.load("k") is None


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        '{"version": 99}',
        '{"version": 1}',
        '{"version": 2}',
        '{"version": 3}',
    ],
)
def test_damaged_state_means_a_fresh_upload(tmp_path: Path, text: str) -> None:
    store = StateStore(tmp_path)
    store.path_for("k").write_text(text)
    assert store.load("k") is None


def test_state_key_changes_with_the_file_and_the_api() -> None:
    base = state_key(Path("/a/f"), 10, 1, "http://api")
    assert base == state_key(Path("/a/f"), 10, 1, "http://api/")
    assert base != state_key(Path("/a/g"), 10, 1, "http://api")
    assert base != state_key(Path("/a/f"), 11, 1, "http://api")
    assert base != state_key(Path("/a/f"), 10, 2, "http://api")
    assert base != state_key(Path("/a/f"), 10, 1, "http://other")


def test_default_state_dir_honours_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CONVEYOR_CLIENT_STATE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_state_dir() == Path("~/.cache/conveyor/uploads").expanduser()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / "conveyor" / "uploads"
    monkeypatch.setenv("CONVEYOR_CLIENT_STATE_DIR", str(tmp_path / "s"))
    assert default_state_dir() == tmp_path / "s"


def test_a_crc64nvme_state_round_trips(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    state = _state()
    state.sha256 = None
    state.part_checksum = "crc64nvme"
    state.crc64nvme = "AAECAwQFBgc="
    store.save("k", state)
    assert store.load("k") == state


def test_a_version_2_state_resumes_with_sha256_parts(tmp_path: Path) -> None:
    """A state written before the part checksum could be CRC64NVME still resumes."""
    store = StateStore(tmp_path)
    old = _state().to_json()
    old["version"] = 2
    del old["part_checksum"], old["crc64nvme"]
    old["parts"] = {
        n: {"etag": p["etag"], "sha256": p["checksum"]} for n, p in old["parts"].items()
    }
    store.path_for("k").write_text(json.dumps(old))
    assert store.load("k") == _state()


def test_an_unknown_part_checksum_means_a_fresh_upload(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    data = _state().to_json() | {"part_checksum": "md5"}
    store.path_for("k").write_text(json.dumps(data))
    assert store.load("k") is None


def test_superseded_states_are_the_same_paths_earlier_versions_on_the_same_api(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path / "states")
    before = _state()
    store.save("before-edit", before)
    store.save("current", replace(before, mtime_ns=456, upload_id="u-2"))
    store.save("other-path", replace(before, path="/data/other.iso", upload_id="u-3"))
    store.save("other-api", replace(before, api_url="https://api.example", upload_id="u-4"))
    store.path_for("damaged").write_text("{")

    found = store.superseded(Path(before.path), before.api_url, "current")

    assert found == {"before-edit": before}
    assert StateStore(tmp_path / "never-made").superseded(Path("/x"), "u", "k") == {}

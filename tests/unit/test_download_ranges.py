"""Pure logic of a resumed download's HTTP answers that the stack's servers never give (they
honour `Range`): a server that ignores it, answers another range, or has nothing past the
partial file. The store and the edge themselves are exercised in
tests/integration/test_download.py."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conveyor_client import IntegrityError
from conveyor_client._download import Download, partial_path

DATA = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(DATA).hexdigest()


def server(answer: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(answer))


def streamed(status: int, data: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    """An answer whose body is still to be read, as from a real connection."""
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(data))


def whole_file(request: httpx.Request) -> httpx.Response:
    return streamed(200, DATA)


def with_partial(tmp_path: Path, held: bytes) -> Download:
    target = tmp_path / "f.bin"
    partial_path(target, "id").write_bytes(held)
    return Download(target, "id", len(DATA), SHA)


def test_a_server_that_ignores_range_sends_the_whole_file_again(tmp_path: Path) -> None:
    download = with_partial(tmp_path, DATA[:1000])
    assert download.resumed_from == 1000

    download.fetch(server(whole_file), "http://store/f")

    assert download.finish().read_bytes() == DATA
    assert download.bytes_received == len(DATA)


def test_another_range_than_the_one_asked_for_starts_over(tmp_path: Path) -> None:
    asked: list[str | None] = []

    def from_byte_10_when_asked_for_a_range(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("range"))
        if "range" not in request.headers:
            return whole_file(request)
        headers = {"content-range": f"bytes 10-{len(DATA) - 1}/{len(DATA)}"}
        return streamed(206, DATA[10:], headers)

    download = with_partial(tmp_path, DATA[:1000])
    download.fetch(server(from_byte_10_when_asked_for_a_range), "http://store/f")

    assert asked == ["bytes=1000-", None]
    assert download.finish().read_bytes() == DATA  # byte 10 was not appended after byte 999


def test_nothing_past_a_complete_partial_file_finishes_it(tmp_path: Path) -> None:
    download = with_partial(tmp_path, DATA)

    download.fetch(server(lambda request: httpx.Response(416)), "http://store/f")

    assert download.finish().read_bytes() == DATA
    assert download.bytes_received == 0


def test_a_partial_file_longer_than_the_file_is_dropped(tmp_path: Path) -> None:
    download = with_partial(tmp_path, DATA + b"x")

    assert download.resumed_from == 0
    download.fetch(server(whole_file), "http://store/f")
    assert download.finish().read_bytes() == DATA


def test_a_short_answer_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    download = Download(tmp_path / "f.bin", "id", len(DATA), SHA)
    download.fetch(server(lambda request: streamed(200, DATA[:-1])), "http://s/f")

    with pytest.raises(IntegrityError, match="1048575 bytes arrived, the file has 1048576"):
        download.finish()
    assert list(tmp_path.iterdir()) == []


def test_nothing_past_a_short_partial_file_is_a_size_mismatch(tmp_path: Path) -> None:
    download = with_partial(tmp_path, DATA[:1000])

    download.fetch(server(lambda request: httpx.Response(416)), "http://store/f")

    with pytest.raises(IntegrityError, match="1000 bytes arrived, the file has 1048576"):
        download.finish()

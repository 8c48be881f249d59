"""`GET /v1/files/{id}/events`: every transition as Server-Sent Events, ending with the
terminal status; Last-Event-ID resumes without gaps, live or after the fact."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor_client import Client, FileEvent, NotFoundError
from conveyor_core.settings import Settings
from tests.integration.uploads import auth, declare, put, sample_bytes
from workers.stack.signatures import eicar

TERMINAL = {"ready", "quarantined", "failed", "expired", "cancelled"}


@dataclass(frozen=True)
class Event:
    id: int
    name: str
    data: dict[str, Any]


async def read_stream(
    api: httpx.AsyncClient, key: str, file_id: str, *, last_id: int | None = None, limit: int = 0
) -> list[Event]:
    """Reads one stream until the server ends it (or `limit` events were read)."""
    headers = auth(key) | ({"Last-Event-ID": str(last_id)} if last_id is not None else {})
    events: list[Event] = []
    fields: dict[str, str] = {}
    async with api.stream(
        "GET", f"/v1/files/{file_id}/events", headers=headers, timeout=90
    ) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line == "":
                if "data" in fields:
                    data = json.loads(fields["data"])
                    events.append(Event(int(fields["id"]), fields["event"], data))
                    if limit and len(events) >= limit:
                        break
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
    return events


async def read_events(
    api: httpx.AsyncClient, key: str, file_id: str, *, last_id: int | None = None, limit: int = 0
) -> list[Event]:
    """Reads until the terminal status, resuming as a browser would when the server ends a
    stream early (after 4 s in tests)."""
    events: list[Event] = []
    async with asyncio.timeout(90):
        while True:
            got = await read_stream(api, key, file_id, last_id=last_id, limit=limit)
            events += got
            if limit or (
                events and events[-1].name == "status" and events[-1].data["status"] in TERMINAL
            ):
                return events
            if got:
                last_id = got[-1].id


def check_sequence(events: list[Event], first: int = 1) -> None:
    assert [e.id for e in events] == list(range(first, first + len(events)))
    for event in events:
        assert event.data["seq"] == event.id and event.name == event.data["type"]


async def test_a_stream_shows_every_transition_then_ends_with_the_terminal_status(
    api: httpx.AsyncClient, key_a: str
) -> None:
    content = sample_bytes(900)
    created = await declare(api, key_a, content)
    file_id = created["file_id"]

    # Connected before the bytes arrive: the first event is the waiting, read live.
    [waiting] = await read_events(api, key_a, file_id, limit=1)
    assert (waiting.id, waiting.name, waiting.data["status"]) == (1, "status", "awaiting_upload")

    assert (await put(created, content)).status_code == 200
    rest = await read_events(api, key_a, file_id, last_id=1)  # resumes at 2, no gap
    check_sequence(rest, first=2)
    assert rest[0].data["status"] == "processing"
    final = rest[-1]
    assert (final.name, final.data["status"]) == ("status", "ready")
    assert all(e.data["status"] not in TERMINAL for e in rest[:-1])
    stages = [(e.data["stage"], e.data["status"]) for e in rest if e.name == "stage"]
    for stage in ("verify", "scan"):
        assert (stage, "running") in stages, stages
        assert stages.index((stage, "running")) < max(
            i for i, (name, _) in enumerate(stages) if name == stage
        )
    assert ("verify", "succeeded") in stages and ("scan", "succeeded") in stages
    # Text has no thumbnail and no OCR: skipped at once, never running.
    for stage in ("thumbnails", "ocr"):
        assert [s for s in stages if s[0] == stage] == [(stage, "skipped")], stages

    # The terminal event is sent only once it is committed: the file says the same.
    body = (await api.get(f"/v1/files/{file_id}", headers=auth(key_a))).json()
    assert body["status"] == "ready"

    # After the fact, the whole log is replayed from Postgres, identically.
    replay = await read_events(api, key_a, file_id)
    assert replay == [waiting, *rest]
    tail = await read_events(api, key_a, file_id, last_id=final.id - 2)
    assert tail == rest[-2:]
    assert await read_stream(api, key_a, file_id, last_id=final.id) == []


async def test_a_quarantined_file_skips_its_other_stages_and_ends_quarantined(
    api: httpx.AsyncClient, key_a: str
) -> None:
    content = eicar() + sample_bytes(16)
    created = await declare(api, key_a, content, filename="eicar.com")
    assert (await put(created, content)).status_code == 200
    events = await read_events(api, key_a, created["file_id"])
    check_sequence(events)
    assert events[-1].data["status"] == "quarantined" and events[-1].name == "status"
    scan = [e.data for e in events if e.data["stage"] == "scan"]
    assert scan[-1]["status"] == "succeeded" and scan[-1]["detail"].startswith("infected")


async def test_bad_requests_get_their_codes(
    stack: Settings, api: httpx.AsyncClient, key_a: str, key_b: str
) -> None:
    created = await declare(api, key_a, sample_bytes(64))
    path = f"/v1/files/{created['file_id']}/events"
    other = await api.get(path, headers=auth(key_b))
    assert other.status_code == 404 and other.json()["error"]["code"] == "file_not_found"
    anonymous = await api.get(path)
    assert anonymous.status_code == 401
    bad = await api.get(path, headers=auth(key_a) | {"Last-Event-ID": "five"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_last_event_id"
    negative = await api.get(path, params={"after": -1}, headers=auth(key_a))
    assert negative.status_code == 400
    assert negative.json()["error"]["code"] == "invalid_last_event_id"
    await api.delete(f"/v1/uploads/{created['upload_id']}", headers=auth(key_a))


def test_the_sdk_follows_events_and_the_cli_prints_them(
    stack: Settings, key_a: str, tmp_path: Path
) -> None:
    path = tmp_path / "followed.txt"
    path.write_bytes(sample_bytes(3000))
    with Client(stack.api_url, key_a, state_dir=tmp_path / "state") as client:
        file = client.upload(path)
        followed = list(client.events(file.id))
        assert [e.seq for e in followed] == list(range(1, len(followed) + 1))
        assert followed[-1].is_terminal and followed[-1].status == "ready"
        assert not any(e.is_terminal for e in followed[:-1])
        assert [e.seq for e in client.events(file.id, after=3)] == [e.seq for e in followed[3:]]
        with pytest.raises(NotFoundError):
            list(client.events(str(uuid.uuid4())))

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(CONVEYOR_API_URL=stack.api_url, CONVEYOR_API_KEY=key_a)
    printed = subprocess.run(
        [sys.executable, "-m", "conveyor_client.cli", "events", file.id, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    lines = [json.loads(line) for line in printed.stdout.splitlines()]
    assert [line["seq"] for line in lines] == [e.seq for e in followed]
    assert lines[-1]["status"] == "ready" and lines[-1]["type"] == "status"


async def test_a_stream_the_server_ends_is_resumed_by_the_sdk_without_gaps(
    stack: Settings, api: httpx.AsyncClient, key_a: str, tmp_path: Path
) -> None:
    content = sample_bytes(700)
    created = await declare(api, key_a, content)
    file_id = created["file_id"]

    # The bytes arrive only after the server has ended the first stream (4 s in tests).
    ended = await read_stream(api, key_a, file_id)
    assert [e.data["status"] for e in ended] == ["awaiting_upload"]

    def follow() -> list[FileEvent]:
        with Client(stack.api_url, key_a, state_dir=tmp_path) as client:
            return list(client.events(file_id))

    following = asyncio.create_task(asyncio.to_thread(follow))
    await asyncio.sleep(stack.events_stream_seconds + 2)
    assert (await put(created, content)).status_code == 200
    followed = await asyncio.wait_for(following, timeout=60)
    assert [e.seq for e in followed] == list(range(1, len(followed) + 1))
    assert followed[-1].status == "ready"

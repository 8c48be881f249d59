"""Dedup across tenants is storage only: a tenant uploading bytes another tenant already holds
sees what a first upload shows (its stages running, about as long, a download URL like any
other), so it cannot learn that someone else holds these bytes."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

import httpx
from sqlalchemy.orm import Session, sessionmaker

from conveyor_core.db.models import File, Upload
from tests.integration import samples
from tests.integration.test_file_events import read_events
from tests.integration.uploads import auth, upload

PROCESSING = ("scan", "thumbnails", "ocr")


def _tenant_and_upload(sessions: sessionmaker[Session], file_id: str) -> tuple[str, str]:
    with sessions() as session:
        file = session.get(File, uuid.UUID(file_id))
        assert file is not None
        row = session.query(Upload).filter(Upload.file_id == file.id).one()
        return str(file.tenant_id), str(row.id)


async def test_another_tenants_bytes_look_like_a_first_upload(
    api: httpx.AsyncClient, key_a: str, key_b: str, sessions: sessionmaker[Session]
) -> None:
    content = samples.text_image("ONLY TENANT A HAS THESE")
    first = await upload(api, key_a, content, content_type="image/png", filename="a.png")
    assert first["status"] == "ready"

    second = await upload(api, key_b, content, content_type="image/png", filename="b.png")
    assert second["status"] == "ready" and second["sha256"] == first["sha256"]
    events = await read_events(api, key_b, second["id"])
    stages = [
        (e.data["stage"], e.data["status"], e.data["at"]) for e in events if e.name == "stage"
    ]
    seen = [(name, status) for name, status, _ in stages]
    for name in PROCESSING:
        outcome = first["stages"][name]
        # Its own stage events: running first, then the same outcome as the owner's run.
        assert seen.index((name, "running")) < seen.index((name, outcome["status"])), seen
        assert second["stages"][name]["detail"] == outcome["detail"]
        # About as long as the run that did the work (never at once).
        assert second["stages"][name]["duration_ms"] >= 0.85 * outcome["duration_ms"], (
            name,
            first["stages"],
            second["stages"],
        )
    at = {(name, status): datetime.fromisoformat(when) for name, status, when in stages}
    began = at[("scan", "running")]
    ended = max(at[(name, first["stages"][name]["status"])] for name in PROCESSING)
    longest = max(first["stages"][name]["duration_ms"] for name in PROCESSING)
    assert (ended - began).total_seconds() * 1000 >= 0.85 * longest

    # The download URL names a random sealed key, as a first upload's does: nothing of the
    # tenant or the upload that brought the bytes first.
    tenant_a, upload_a = _tenant_and_upload(sessions, first["id"])
    content_b = await api.get(f"/v1/files/{second['id']}/content", headers=auth(key_b))
    assert content_b.status_code == 307
    location = content_b.headers["location"]
    assert tenant_a not in location and upload_a not in location
    assert re.search(r"/sealed/[0-9a-f]{32}\?", location), location
    async with httpx.AsyncClient() as client:
        assert (await client.get(location)).content == content

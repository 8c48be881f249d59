"""Files larger than the scanner takes (scan_max_bytes, 80 MiB on the test stack): a tenant
that chose `serve_unscanned` gets them ready, marked unscanned in the JSON and on every
download; a tenant that did not (the default, `reject`) never gets them, even as a
duplicate of bytes another tenant was served; an archive is never served unscanned."""

from __future__ import annotations

import io
import json
import os
import uuid
import zipfile

import httpx
import pytest

from conveyor_core.settings import Settings
from tests.integration.conftest import create_key, run_cli
from tests.integration.uploads import auth, upload

pytestmark = pytest.mark.integration


def _serving_tenant(stack: Settings) -> str:
    tenant = f"unscanned-{uuid.uuid4().hex[:8]}"
    key = create_key(stack, tenant)
    shown = run_cli(
        stack, "tenants", "limits", tenant, "--scan-oversize", "serve_unscanned", "--json"
    )
    assert json.loads(shown.stdout)["scan_oversize"] == "serve_unscanned"
    return key


async def test_a_tenant_that_chose_it_is_served_unscanned_and_told_so(
    api: httpx.AsyncClient, stack: Settings, key_b: str
) -> None:
    key = _serving_tenant(stack)
    limit = stack.scan_max_bytes
    content = os.urandom(limit + 1)
    file = await upload(api, key, content, filename="disk.img", visibility="public")

    assert file["status"] == "ready", file
    assert file["scanned"] is False
    assert file["stages"]["scan"]["status"] == "skipped"
    reason = f"too large to scan ({limit + 1} bytes, limit {limit})"
    assert file["stages"]["scan"]["detail"] == f"{reason}; served unscanned"
    download = await api.get(f"/v1/files/{file['id']}/content", headers=auth(key))
    assert download.status_code == 307
    assert download.headers["X-Conveyor-Scanned"] == "false"
    assert download.headers["location"] == file["cdn_url"]
    async with httpx.AsyncClient() as plain:
        # The edge says it too, from the store (a MISS) and from its cache (a HIT).
        for cache in ("MISS", "HIT"):
            got = await plain.get(file["cdn_url"])
            assert got.status_code == 200 and len(got.content) == limit + 1
            assert got.headers["X-Cache-Status"] == cache
            assert got.headers["X-Conveyor-Scanned"] == "false"
            assert not any(h.lower().startswith("x-amz-meta") for h in got.headers)

    # Another tenant, on the default (reject), uploads the same bytes: never served.
    refused = await upload(api, key_b, content, filename="same.img")
    assert refused["status"] == "failed", refused
    assert refused["status_detail"] == f"scan: {reason}"
    assert refused["scanned"] is None
    again = await api.get(f"/v1/files/{refused['id']}/content", headers=auth(key_b))
    assert again.status_code == 409


async def test_an_archive_too_large_to_scan_fails_whatever_the_tenant_chose(
    api: httpx.AsyncClient, stack: Settings
) -> None:
    key = _serving_tenant(stack)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("inside.bin", os.urandom(stack.scan_max_bytes))
    content = buffer.getvalue()
    file = await upload(api, key, content, filename="big.zip")

    assert file["status"] == "failed", file
    assert file["status_detail"] == (
        f"scan: too large to scan ({len(content)} bytes, limit {stack.scan_max_bytes}): "
        "an archive is never served unscanned"
    )


async def test_a_small_file_is_scanned_and_says_so(api: httpx.AsyncClient, key_a: str) -> None:
    content = b"plain words " * 10 + uuid.uuid4().bytes
    file = await upload(api, key_a, content, filename="scanned.txt", visibility="public")
    assert file["status"] == "ready" and file["scanned"] is True
    download = await api.get(f"/v1/files/{file['id']}/content", headers=auth(key_a))
    assert download.status_code == 307 and "X-Conveyor-Scanned" not in download.headers
    async with httpx.AsyncClient() as plain:
        got = await plain.get(file["cdn_url"])
    assert got.status_code == 200 and got.content == content
    assert "X-Conveyor-Scanned" not in got.headers

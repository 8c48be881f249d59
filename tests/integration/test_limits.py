"""Per-tenant quotas (files, bytes) answer 413 with a code; a key over its request rate gets
429 rate_limited with Retry-After, and is served again once the window moves on."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx

from conveyor_core.settings import Settings
from tests.integration.conftest import create_key, run_cli
from tests.integration.uploads import auth, declare, put, sample_bytes, wait_for_status


def limited_tenant(stack: Settings, *options: str) -> tuple[str, str]:
    tenant = f"limits-{uuid.uuid4().hex[:8]}"
    key = create_key(stack, tenant)
    run_cli(stack, "tenants", "limits", tenant, *options)
    return tenant, key


async def test_file_and_byte_quotas_refuse_uploads_past_them(
    stack: Settings, api: httpx.AsyncClient
) -> None:
    tenant, key = limited_tenant(stack, "--max-files", "2", "--max-bytes", "10000")
    first_bytes = sample_bytes(6000)
    first = await declare(api, key, first_bytes)
    assert (await put(first, first_bytes)).status_code == 200
    await wait_for_status(api, key, first["file_id"], "ready")

    too_big = await api.post(
        "/v1/uploads",
        json={"filename": "b.txt", "size": 5000, "content_type": "text/plain"},
        headers=auth(key),
    )
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "storage_quota_exceeded"

    await declare(api, key, sample_bytes(3000))  # the second file fits
    third = await api.post(
        "/v1/uploads",
        json={"filename": "c.txt", "size": 10, "content_type": "text/plain"},
        headers=auth(key),
    )
    assert third.status_code == 413 and third.json()["error"]["code"] == "file_quota_exceeded"

    shown = run_cli(stack, "tenants", "limits", tenant).stdout
    assert "files       2 of 2" in shown and "bytes       9000 of 10000" in shown
    as_json = json.loads(run_cli(stack, "tenants", "limits", tenant, "--json").stdout)
    assert as_json["tenant"] == tenant
    assert (as_json["files"], as_json["max_files"], as_json["bytes"], as_json["max_bytes"]) == (
        2,
        2,
        9000,
        10000,
    )

    # Deleting gives the room back.
    assert (await api.delete(f"/v1/files/{first['file_id']}", headers=auth(key))).status_code == 204
    await declare(api, key, sample_bytes(500))


async def test_a_key_over_its_rate_is_told_when_to_come_back(
    stack: Settings, api: httpx.AsyncClient
) -> None:
    _, key = limited_tenant(stack, "--rate-limit", "10/second")
    answers = await asyncio.gather(*(api.get("/v1/files", headers=auth(key)) for _ in range(30)))
    codes = [a.status_code for a in answers]
    assert codes.count(200) == 10 and codes.count(429) == 20, codes
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 1
    await asyncio.sleep(1.2)
    assert (await api.get("/v1/files", headers=auth(key))).status_code == 200
    # Another tenant's key is not slowed by it.
    other = create_key(stack, f"limits-other-{uuid.uuid4().hex[:8]}")
    assert (await api.get("/v1/files", headers=auth(other))).status_code == 200


def test_the_cli_refuses_a_malformed_rate(stack: Settings) -> None:
    tenant = f"limits-{uuid.uuid4().hex[:8]}"
    create_key(stack, tenant)
    try:
        run_cli(stack, "tenants", "limits", tenant, "--rate-limit", "lots")
    except Exception as e:  # CalledProcessError: usage error
        assert getattr(e, "returncode", None) == 2
    else:
        raise AssertionError("a malformed rate was accepted")

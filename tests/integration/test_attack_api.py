"""A hostile tenant (or no tenant at all) against the real API: each test is one attack, and
each fails on an API that reads bodies before checking keys, lets odd bytes reach the
database, serves /metrics to everyone or lets streams and probes pile up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

import httpx
import pytest

from conveyor_core.settings import Settings
from tests.helpers import assert_eventually
from tests.integration.conftest import create_key, run_cli
from tests.integration.test_metrics import sample, scrape
from tests.integration.uploads import auth, declare, sample_bytes

MIB = 1024 * 1024
# Long enough for a loaded two-core machine, far shorter than "waits for the whole body".
ANSWER_TIMEOUT = 10.0


def _declaration(**changes: object) -> dict[str, object]:
    return {"filename": "a.txt", "size": 1, "content_type": "text/plain", **changes}


async def _raw_request(stack: Settings, head: str, *body: bytes) -> tuple[int, str, str]:
    """Sends `head` and the `body` pieces over one connection, without finishing the body
    the head announces, and reads the answer: (status, headers, body). Times out if the
    server waits for the rest of the body first."""
    reader, writer = await asyncio.open_connection(stack.host, stack.api_port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
        for piece in body:
            writer.write(piece)
        await writer.drain()
        async with asyncio.timeout(ANSWER_TIMEOUT):
            raw_head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            length = next(
                int(line.split(":", 1)[1])
                for line in raw_head.lower().splitlines()
                if line.startswith("content-length:")
            )
            raw_body = (await reader.readexactly(length)).decode()
            # Answered before the body came, the server closes rather than read the rest:
            # with our unread bytes in its buffer, its kernel may send a reset, not a FIN.
            try:
                rest = await reader.read()
            except ConnectionResetError:
                rest = b""
            assert rest == b""
        return int(raw_head.split()[1]), raw_head.lower(), raw_body
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _code(body: str) -> str:
    code: str = json.loads(body)["error"]["code"]
    return code


async def test_an_unauthenticated_malformed_body_is_401_not_422(api: httpx.AsyncClient) -> None:
    for headers, code in (({}, "missing_api_key"), (auth("cvk_not-a-key"), "invalid_api_key")):
        response = await api.post(
            "/v1/uploads",
            content=b"{not json",
            headers={**headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == code


async def test_an_unauthenticated_body_is_refused_before_it_is_read(stack: Settings) -> None:
    # 10 MiB announced, 32 KiB sent: answered at once, the rest never awaited.
    status, _, body = await _raw_request(
        stack,
        f"POST /v1/uploads HTTP/1.1\nHost: api\nContent-Type: application/json\n"
        f"Content-Length: {10 * MIB}\n",
        b"x" * 32 * 1024,
    )
    assert status in (401, 413), body
    # Under the cap, announced and not sent: the key is checked before the body is awaited.
    status, _, body = await _raw_request(
        stack,
        "POST /v1/uploads HTTP/1.1\nHost: api\nContent-Type: application/json\n"
        "Content-Length: 60000\n",
        b'{"filename": "a.txt", ',
    )
    assert (status, _code(body)) == (401, "missing_api_key"), body


async def test_an_authenticated_oversize_json_body_is_413(
    stack: Settings, api: httpx.AsyncClient, key_a: str
) -> None:
    padded = _declaration(filename="x" * (stack.api_max_body_bytes + 1))
    response = await api.post("/v1/uploads", json=padded, headers=auth(key_a))
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "request_too_large"


async def test_a_chunked_oversize_body_is_413_while_it_streams(stack: Settings, key_a: str) -> None:
    chunk = b"x" * 8192
    pieces = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (stack.api_max_body_bytes // len(chunk) + 2)
    # The last chunk (0) never comes: only a server counting as it reads can answer.
    status, headers, body = await _raw_request(
        stack,
        f"POST /v1/uploads HTTP/1.1\nHost: api\nAuthorization: Bearer {key_a}\n"
        "Content-Type: application/json\nTransfer-Encoding: chunked\n",
        *pieces,
    )
    assert (status, _code(body)) == (413, "request_too_large"), body
    assert "connection: close" in headers


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain\r\nX-Injected: 1",
        "text/plain\n",
        "text/plain\x00",
        "text/pla\u212an",  # KELVIN SIGN, which a case-insensitive Unicode [a-z] takes for k
        "t\u00e9xt/plain",
        'text/plain; charset="utf\x01-8"',
    ],
)
async def test_a_content_type_with_controls_or_non_ascii_is_422(
    api: httpx.AsyncClient, key_a: str, content_type: str
) -> None:
    body = _declaration(content_type=content_type)
    response = await api.post("/v1/uploads", json=body, headers=auth(key_a))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_content_type"


@pytest.mark.parametrize(
    "filename",
    [
        "invoice\u202efdp.exe",  # RIGHT-TO-LEFT OVERRIDE: shows as invoiceexe.pdf
        "a\u2066b.txt",  # LEFT-TO-RIGHT ISOLATE
        "a\u200fb.txt",  # RIGHT-TO-LEFT MARK
        "a\u061cb.txt",  # ARABIC LETTER MARK
        "a\x85b.txt",  # NEXT LINE (C1)
        "a\x1bb.txt",  # ESCAPE (C0)
    ],
)
async def test_a_filename_with_control_or_bidi_characters_is_422(
    api: httpx.AsyncClient, key_a: str, filename: str
) -> None:
    response = await api.post(
        "/v1/uploads", json=_declaration(filename=filename), headers=auth(key_a)
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_filename"


async def test_event_ids_beyond_a_bigint_are_400(api: httpx.AsyncClient, key_a: str) -> None:
    created = await declare(api, key_a, sample_bytes(64))
    path = f"/v1/files/{created['file_id']}/events"
    attempts = [
        {"params": {"after": str(2**63)}},
        {"params": {"after": "-1"}},
        {"headers": {"Last-Event-ID": "99999999999999999999"}},
        {"headers": {"Last-Event-ID": "1_000"}},
    ]
    for attempt in attempts:
        headers = {**auth(key_a), **attempt.get("headers", {})}
        response = await api.get(path, params=attempt.get("params"), headers=headers)
        assert response.status_code == 400, (attempt, response.text)
        assert response.json()["error"]["code"] == "invalid_last_event_id"
    await api.delete(f"/v1/uploads/{created['upload_id']}", headers=auth(key_a))


async def test_metrics_are_not_served_on_the_api_port(
    stack: Settings, api: httpx.AsyncClient
) -> None:
    for path in ("/metrics", "/metrics/"):
        response = await api.get(path)
        assert response.status_code == 404, response.text
        assert "conveyor_api_errors" not in response.text
    served = scrape(f"http://{stack.host}:{stack.api_metrics_port}/metrics")
    assert "conveyor_api_errors_total" in served


async def test_a_flood_of_readyz_probes_the_dependencies_once(
    stack: Settings, api: httpx.AsyncClient
) -> None:
    metrics = f"http://{stack.host}:{stack.api_metrics_port}/metrics"
    probes = "conveyor_api_readiness_probes_total"
    # Past the cache's age, so the flood starts with no answer at hand.
    await asyncio.sleep(stack.readyz_cache_seconds + 0.2)
    before = sample(scrape(metrics), probes)
    answers = await asyncio.gather(*(api.get("/readyz") for _ in range(60)))
    assert {a.status_code for a in answers} == {200}
    ran = sample(scrape(metrics), probes) - before
    # One probe, shared by all; two if the flood outlasted the cache's age.
    assert 1 <= ran <= 2, ran


async def test_streams_over_the_tenants_cap_are_429(
    stack: Settings, api: httpx.AsyncClient
) -> None:
    tenant = f"streams-{uuid.uuid4().hex[:8]}"
    key = create_key(stack, tenant)
    run_cli(stack, "tenants", "limits", tenant, "--rate-limit", "1000/second")
    created = await declare(api, key, sample_bytes(64))  # never uploaded: its stream stays open
    path = f"/v1/files/{created['file_id']}/events"
    async with contextlib.AsyncExitStack() as streams:
        for _ in range(stack.api_max_streams_per_tenant):
            held = await streams.enter_async_context(api.stream("GET", path, headers=auth(key)))
            assert held.status_code == 200
        extra = await api.get(path, headers=auth(key))
        assert extra.status_code == 429, extra.text
        assert extra.json()["error"]["code"] == "too_many_streams"
        assert int(extra.headers["retry-after"]) >= 1
        # The streams hold no database connection while they wait: other requests go on.
        listed = await api.get("/v1/files", headers=auth(key))
        assert listed.status_code == 200, listed.text

    # Closed streams give their slots back (once the server has seen them go).
    async def accepted_again() -> None:
        async with api.stream("GET", path, headers=auth(key)) as again:
            assert again.status_code == 200

    await assert_eventually(accepted_again, timeout=10)
    await api.delete(f"/v1/uploads/{created['upload_id']}", headers=auth(key))

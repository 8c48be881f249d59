"""Outgoing webhooks through the real stack, to a real HTTP receiver started by the test:
registered endpoints, signed deliveries, retries while the receiver is down, filtering,
tenant isolation and the private-address refusal (the test stack opts in to private
addresses, its receivers being on 127.0.0.1; a deployment refuses them by default)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.webhooks import WebhookActivities
from api.app import create_app
from conveyor_client import verify_signature
from conveyor_core.db.models import WebhookDelivery
from conveyor_core.settings import Settings
from conveyor_core.types import WEBHOOK_REFUSED_ERROR, DeliverWebhookInput
from tests.helpers import assert_eventually
from tests.integration.conftest import create_key
from tests.integration.test_api_contract import assert_error
from tests.integration.uploads import auth, declare, sample_bytes, upload
from workers.stack.signatures import eicar

ALL_EVENTS = ["file.ready", "file.failed", "file.quarantined", "file.expired", "file.cancelled"]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """A webhook receiver: a stdlib HTTP server in a thread, recording every request."""

    port: int
    requests: list[Received] = field(default_factory=list)

    def url(self, path: str = "/hooks/conveyor") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        return [r for r in list(self.requests) if r.path == path]


def free_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def receiving(receiver: Receiver) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def tenant_key(stack: Settings) -> str:
    """A tenant of the test's own: no other test's endpoints or files in sight."""
    return create_key(stack, f"webhooks-{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def endpoints(api: httpx.AsyncClient, tenant_key: str) -> AsyncIterator[list[str]]:
    """Endpoints registered by the test, deleted after it so none keeps being retried."""
    registered: list[str] = []
    yield registered
    for webhook_id in registered:
        await api.delete(f"/v1/webhooks/{webhook_id}", headers=auth(tenant_key))


async def register(
    api: httpx.AsyncClient,
    key: str,
    url: str,
    endpoints: list[str],
    events: list[str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url}
    if events is not None:
        body["events"] = events
    response = await api.post("/v1/webhooks", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    endpoints.append(created["id"])
    return created


async def deliveries(api: httpx.AsyncClient, key: str, webhook_id: str) -> list[dict[str, Any]]:
    response = await api.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=auth(key))
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["deliveries"]
    return found


def check_signed(request: Received, secret: str) -> dict[str, Any]:
    """The request is a signed Conveyor webhook; returns its body."""
    verify_signature(secret, request.headers.get("Conveyor-Signature"), request.body)
    assert request.headers["Content-Type"] == "application/json"
    body = request.json()
    assert request.headers["Conveyor-Event"] == body["type"]
    assert request.headers["Conveyor-Delivery"] == body["id"]
    assert set(body) == {"id", "type", "created_at", "data"}
    return body


async def test_webhook_receiver_down_then_up_receives_every_event(
    api: httpx.AsyncClient, tenant_key: str, endpoints: list[str]
) -> None:
    receiver = Receiver(free_port())
    created = await register(api, tenant_key, receiver.url(), endpoints)
    assert created["events"] == ALL_EVENTS and created["secret"].startswith("whsec_")
    contents = [sample_bytes(300), sample_bytes(400)]
    files = [
        await upload(api, tenant_key, c, content_type="text/plain", filename=f"note-{i}.txt")
        for i, c in enumerate(contents)
    ]
    assert [f["status"] for f in files] == ["ready", "ready"]

    async def retrying() -> list[dict[str, Any]]:
        found = await deliveries(api, tenant_key, created["id"])
        assert len(found) == 2, found
        for d in found:
            assert d["status"] == "pending" and d["attempts"] >= 2, d
            assert d["last_status_code"] is None and "ConnectError" in d["last_error"], d
            assert d["event"] == "file.ready" and d["delivered_at"] is None, d
        return found

    pending = await assert_eventually(retrying, timeout=30, interval=0.2)

    with receiving(receiver):

        async def delivered() -> list[dict[str, Any]]:
            found = await deliveries(api, tenant_key, created["id"])
            assert [d["status"] for d in found] == ["delivered", "delivered"], found
            return found

        # The retry interval is at most 2 s in the test settings.
        done = await assert_eventually(delivered, timeout=15, interval=0.2)

    assert {d["id"] for d in done} == {d["id"] for d in pending}
    for d in done:
        assert d["attempts"] >= 3 and d["last_status_code"] == 200 and d["last_error"] is None
        assert d["delivered_at"] is not None and d["next_attempt_at"] is None
    assert len(receiver.requests) == 2
    bodies = {
        body["data"]["file_id"]: body
        for body in (check_signed(r, created["secret"]) for r in receiver.requests)
    }
    assert set(bodies) == {f["id"] for f in files}
    for file, content in zip(files, contents, strict=True):
        body = bodies[file["id"]]
        assert body["type"] == "file.ready" and body["id"] in {d["id"] for d in done}
        assert body["data"] == {
            "file_id": file["id"],
            "filename": file["filename"],
            "status": "ready",
            "status_detail": None,
            "size": len(content),
            "content_type": "text/plain",
            "sha256": hashlib.sha256(content).hexdigest(),
            "visibility": "private",
        }
    assert all(r.path == "/hooks/conveyor" for r in receiver.requests)


async def test_webhook_events_follow_the_outcome_and_the_subscription(
    api: httpx.AsyncClient, tenant_key: str, endpoints: list[str]
) -> None:
    with receiving(Receiver(free_port())) as receiver:
        everything = await register(api, tenant_key, receiver.url("/all"), endpoints)
        failed_only = await register(
            api, tenant_key, receiver.url("/failed"), endpoints, events=["file.failed"]
        )
        assert failed_only["events"] == ["file.failed"]
        infected = await upload(api, tenant_key, eicar() + sample_bytes(16), filename="x.com")
        assert infected["status"] == "quarantined"
        clean = await upload(api, tenant_key, sample_bytes(200), filename="clean.txt")
        assert clean["status"] == "ready"
        abandoned = await declare(api, tenant_key, sample_bytes(50))
        cancel = await api.delete(f"/v1/uploads/{abandoned['upload_id']}", headers=auth(tenant_key))
        assert cancel.status_code == 202, cancel.text

        async def three_events() -> None:
            assert len(receiver.on("/all")) == 3

        await assert_eventually(three_events, timeout=30, interval=0.2)

    by_file = {
        body["data"]["file_id"]: body
        for body in (check_signed(r, everything["secret"]) for r in receiver.on("/all"))
    }
    assert by_file[infected["id"]]["type"] == "file.quarantined"
    assert by_file[infected["id"]]["data"]["status"] == "quarantined"
    assert by_file[infected["id"]]["data"]["status_detail"].startswith("infected: ")
    assert by_file[clean["id"]]["type"] == "file.ready"
    assert by_file[abandoned["file_id"]]["type"] == "file.cancelled"
    assert by_file[abandoned["file_id"]]["data"]["status"] == "cancelled"
    # Subscribed to file.failed only: nothing was enqueued, nothing sent.
    assert receiver.on("/failed") == []
    assert await deliveries(api, tenant_key, failed_only["id"]) == []

    # Newest first, cursor-paginated.
    page = await api.get(
        f"/v1/webhooks/{everything['id']}/deliveries", params={"limit": 2}, headers=auth(tenant_key)
    )
    assert page.status_code == 200 and len(page.json()["deliveries"]) == 2
    rest = await api.get(
        f"/v1/webhooks/{everything['id']}/deliveries",
        params={"limit": 2, "cursor": page.json()["next_cursor"]},
        headers=auth(tenant_key),
    )
    assert rest.status_code == 200 and rest.json()["next_cursor"] is None
    listed = page.json()["deliveries"] + rest.json()["deliveries"]
    assert [d["file_id"] for d in listed][-1] == infected["id"]
    assert {d["status"] for d in listed} == {"delivered"}
    created_at = [d["created_at"] for d in listed]
    assert created_at == sorted(created_at, reverse=True)


async def test_webhook_routes_need_a_key_and_keep_tenants_apart(
    api: httpx.AsyncClient, tenant_key: str, key_b: str, endpoints: list[str]
) -> None:
    created = await register(api, tenant_key, "https://hooks.example.com/conveyor", endpoints)
    webhook = f"/v1/webhooks/{created['id']}"
    assert_error(
        await api.post("/v1/webhooks", json={"url": "http://x.example"}), 401, "missing_api_key"
    )
    assert_error(await api.get("/v1/webhooks"), 401, "missing_api_key")
    assert_error(await api.delete(webhook), 401, "missing_api_key")
    assert_error(await api.get(f"{webhook}/deliveries"), 401, "missing_api_key")

    mine = (await api.get("/v1/webhooks", headers=auth(tenant_key))).json()["webhooks"]
    assert mine == [
        {
            "id": created["id"],
            "url": "https://hooks.example.com/conveyor",
            "events": ALL_EVENTS,
            "created_at": created["created_at"],
        }
    ]
    theirs = (await api.get("/v1/webhooks", headers=auth(key_b))).json()["webhooks"]
    assert created["id"] not in {w["id"] for w in theirs}
    assert_error(
        await api.get(f"{webhook}/deliveries", headers=auth(key_b)), 404, "webhook_not_found"
    )
    assert_error(await api.delete(webhook, headers=auth(key_b)), 404, "webhook_not_found")
    assert_error(
        await api.get(f"/v1/webhooks/{uuid.uuid4()}/deliveries", headers=auth(tenant_key)),
        404,
        "webhook_not_found",
    )

    assert (await api.delete(webhook, headers=auth(tenant_key))).status_code == 204
    assert_error(await api.delete(webhook, headers=auth(tenant_key)), 404, "webhook_not_found")
    assert_error(
        await api.get(f"{webhook}/deliveries", headers=auth(tenant_key)), 404, "webhook_not_found"
    )
    assert (await api.get("/v1/webhooks", headers=auth(tenant_key))).json()["webhooks"] == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "ftp://example.com/hook"}, "invalid_url"),
        ({"url": "example.com/hook"}, "invalid_url"),
        ({"url": "http://"}, "invalid_url"),
        ({"url": "http://exa mple.com/"}, "invalid_url"),
        ({"url": "https://example.com/" + "a" * 3000}, "invalid_url"),
        ({"url": "https://example.com", "events": ["file.bogus"]}, "invalid_events"),
        ({"url": "https://example.com", "events": []}, "invalid_events"),
    ],
)
async def test_webhook_registration_rejects_bad_urls_and_events(
    api: httpx.AsyncClient, key_a: str, body: dict[str, Any], code: str
) -> None:
    assert_error(await api.post("/v1/webhooks", json=body, headers=auth(key_a)), 400, code)


async def test_webhook_private_urls_refused_when_not_allowed(
    stack: Settings,
    api: httpx.AsyncClient,
    tenant_key: str,
    endpoints: list[str],
    sessions: sessionmaker[Session],
) -> None:
    strict = stack.model_copy(update={"webhook_allow_private_urls": False})
    # At registration: the API of a deployment that refuses private addresses.
    app = create_app(strict)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        for url in (
            "http://127.0.0.1:9/hook",
            "http://localhost/hook",
            "http://169.254.169.254/",
            # IPv6 forms that carry a private IPv4 address, and IPv6 site-local.
            "http://[::ffff:127.0.0.1]:9/hook",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
            "http://[2002:7f00:1::]/",
            "http://[fec0::1]/",
        ):
            response = await client.post(
                "/v1/webhooks", json={"url": url}, headers=auth(tenant_key)
            )
            assert_error(response, 400, "invalid_url")
            assert "private address" in response.json()["error"]["message"]

    # At delivery: an endpoint registered while allowed is refused once it is not, for good.
    created = await register(api, tenant_key, f"http://127.0.0.1:{free_port()}/", endpoints)
    await upload(api, tenant_key, sample_bytes(100), filename="a.txt")

    async def pending() -> str:
        found = await deliveries(api, tenant_key, created["id"])
        assert len(found) == 1 and found[0]["status"] == "pending", found
        delivery_id: str = found[0]["id"]
        return delivery_id

    delivery_id = await assert_eventually(pending, timeout=30)
    activities = WebhookActivities(sessions, strict)
    with pytest.raises(ApplicationError) as refused:
        # In a thread of its own, as a worker runs it (it drives an event loop of its own).
        await asyncio.to_thread(
            ActivityEnvironment().run, activities.deliver_webhook, DeliverWebhookInput(delivery_id)
        )
    assert refused.value.type == WEBHOOK_REFUSED_ERROR and refused.value.non_retryable
    with sessions() as session:
        row = session.get(WebhookDelivery, uuid.UUID(delivery_id))
        assert row is not None and row.status == "failed"
        assert row.last_error is not None and "private address (127.0.0.1)" in row.last_error

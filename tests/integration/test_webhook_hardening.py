"""Webhooks cannot hold workers, nor reach inside: each test is an attack by a receiver (or
its DNS) on the real stack, or on the delivery activity run against its real Postgres.

- a receiver that drips bytes is cut off at the attempt's wall-clock deadline;
- a 2xx answer with a huge body is not read;
- one tenant's hanging receivers take at most its share of delivery slots;
- the address checked is the address connected to (DNS rebinding);
- the worker's HTTP(S)_PROXY is not used.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.webhooks import BUSY_ERROR, UNREACHABLE_ERROR, WebhookActivities
from conveyor_core.db.models import File, WebhookDelivery, WebhookEndpoint, WebhookInFlight
from conveyor_core.settings import Settings
from conveyor_core.types import DeliverWebhookInput, DeliveryStatus
from conveyor_core.webhooks import new_secret
from tests.helpers import assert_eventually
from tests.integration.conftest import create_key
from tests.integration.test_webhooks import (  # noqa: F401
    deliveries,
    endpoints,  # noqa: F401 - fixture
    register,
    tenant_key,
)
from tests.integration.uploads import auth, declare, sample_bytes, upload
from tests.integration.webhook_receivers import RawReceiver, raw_receiving

MARGIN = 2.0  # seconds past the deadline for the worker to close the connection


# --- helpers ------------------------------------------------------------------------------


# The endpoints own_delivery made during the running test, deleted after it.
_OWN_ENDPOINTS: list[uuid.UUID] = []


@pytest.fixture(autouse=True)
def _own_endpoints_deleted(sessions: sessionmaker[Session]) -> Iterator[None]:
    yield
    with sessions() as session, session.begin():
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id.in_(_OWN_ENDPOINTS))
            .values(deleted_at=datetime.now(UTC))
        )
    _OWN_ENDPOINTS.clear()


def own_delivery(sessions: sessionmaker[Session], file_id: str, url: str) -> str:
    """An endpoint and a pending delivery made in Postgres directly: no workflow runs it, so
    the test alone decides when it is attempted (through the activity)."""
    with sessions() as session, session.begin():
        file = session.get(File, uuid.UUID(file_id))
        assert file is not None
        endpoint = WebhookEndpoint(
            id=uuid.uuid4(),
            tenant_id=file.tenant_id,
            url=url,
            events=["file.ready"],
            secret=new_secret(),
            created_at=datetime.now(UTC),
        )
        session.add(endpoint)
        session.flush()
        _OWN_ENDPOINTS.append(endpoint.id)
        delivery_id = uuid.uuid4()
        session.add(
            WebhookDelivery(
                id=delivery_id,
                endpoint_id=endpoint.id,
                file_id=file.id,
                event="file.ready",
                body='{"id":"test"}',
                status=DeliveryStatus.PENDING.value,
                attempts=0,
                created_at=datetime.now(UTC),
            )
        )
    return str(delivery_id)


def delivery_row(sessions: sessionmaker[Session], delivery_id: str) -> WebhookDelivery:
    with sessions() as session:
        row = session.get(WebhookDelivery, uuid.UUID(delivery_id))
        assert row is not None
        session.expunge(row)
        return row


async def run_attempt(
    activities: WebhookActivities,
    delivery_id: str,
    heartbeats: list[float] | None = None,
) -> Any:
    """deliver_webhook once, as a worker thread runs it (it drives its own event loop)."""
    env = ActivityEnvironment()
    if heartbeats is not None:
        env.on_heartbeat = lambda *_: heartbeats.append(time.monotonic())
    return await asyncio.to_thread(
        env.run, activities.deliver_webhook, DeliverWebhookInput(delivery_id)
    )


@pytest.fixture
def declared_file(api: httpx.AsyncClient, tenant_key: str) -> Callable[[], Any]:  # noqa: F811
    async def make() -> str:
        found = await declare(api, tenant_key, sample_bytes(64))
        file_id: str = found["file_id"]
        return file_id

    return make


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch


# --- the deadline -------------------------------------------------------------------------


async def test_webhook_slow_drip_receiver_is_cut_off_at_the_deadline(
    stack: Settings,
    api: httpx.AsyncClient,
    tenant_key: str,  # noqa: F811
    endpoints: list[str],  # noqa: F811
) -> None:
    """Headers that never end, one byte at a time: the attempt (and its connection) ends at
    the deadline; another endpoint's delivery goes through meanwhile."""
    deadline = stack.webhook_timeout_seconds
    with (
        raw_receiving(RawReceiver("drip_headers")) as drip,
        raw_receiving(RawReceiver("ok")) as good,
    ):
        slow = await register(api, tenant_key, drip.url(), endpoints)
        fine = await register(api, tenant_key, good.url(), endpoints)
        await upload(api, tenant_key, sample_bytes(100), filename="a.txt")

        async def good_delivered() -> None:
            found = await deliveries(api, tenant_key, fine["id"])
            assert [d["status"] for d in found] == ["delivered"], found

        await assert_eventually(good_delivered, timeout=30, interval=0.2)

        async def first_cut_off() -> float:
            assert drip.connections and drip.connections[0].closed_at is not None
            return drip.connections[0].closed_at - drip.connections[0].opened_at

        held = await assert_eventually(first_cut_off, timeout=deadline + 20, interval=0.2)
        assert held <= deadline + MARGIN, held

        async def recorded() -> dict[str, Any]:
            found = await deliveries(api, tenant_key, slow["id"])
            assert len(found) == 1 and found[0]["last_error"], found
            return found[0]

        row = await assert_eventually(recorded, timeout=10, interval=0.2)
    assert row["status"] == "pending" and row["attempts"] >= 1 and row["last_status_code"] is None
    assert row["last_error"].startswith("Timeout: no answer within the 10 s"), row
    assert "connection was closed" in row["last_error"]
    assert "/hook" not in row["last_error"]  # no URL path (nor its tokens) in the error


async def test_webhook_attempt_heartbeats_and_bounds_a_dripping_error_body(
    stack: Settings,
    sessions: sessionmaker[Session],
    declared_file: Callable[[], Any],
) -> None:
    """A 503 whose body drips: the status is the answer, the body read stops at the deadline,
    and the attempt heartbeats while it lasts."""
    settings = stack.model_copy(update={"webhook_timeout_seconds": 3})
    activities = WebhookActivities(sessions, settings)
    with raw_receiving(RawReceiver("drip_error_body")) as drip:
        delivery_id = own_delivery(sessions, await declared_file(), drip.url())
        beats: list[float] = []
        started = time.monotonic()
        with pytest.raises(ApplicationError) as failed:
            await run_attempt(activities, delivery_id, beats)
        took = time.monotonic() - started

        async def cut_off() -> None:
            assert drip.connections and drip.connections[0].closed_at is not None

        await assert_eventually(cut_off, timeout=5)
    assert took <= 3 + MARGIN, took
    assert failed.value.type == "WebhookRejected"
    assert len(beats) >= 2, beats  # at the start, and every 2 s of the attempt
    row = delivery_row(sessions, delivery_id)
    assert row.last_status_code == 503 and row.attempts == 1
    assert row.last_error is not None and row.last_error.startswith("HTTP 503: busy, a")


async def test_webhook_2xx_with_a_huge_body_is_delivered_without_reading_it(
    api: httpx.AsyncClient,
    tenant_key: str,  # noqa: F811
    endpoints: list[str],  # noqa: F811
) -> None:
    with raw_receiving(RawReceiver("huge_ok")) as huge:
        created = await register(api, tenant_key, huge.url(), endpoints)
        await upload(api, tenant_key, sample_bytes(100), filename="a.txt")

        async def delivered() -> None:
            found = await deliveries(api, tenant_key, created["id"])
            assert [d["status"] for d in found] == ["delivered"], found
            assert huge.connections and huge.connections[0].closed_at is not None

        await assert_eventually(delivered, timeout=30, interval=0.2)
    # What the server managed to send before Conveyor hung up: socket buffers at most,
    # nowhere near the 100 MiB it offered.
    assert len(huge.connections) == 1
    assert huge.connections[0].sent < 1024 * 1024, huge.connections[0].sent


# --- fairness -----------------------------------------------------------------------------


async def test_webhook_one_tenants_slow_receivers_leave_slots_for_another(
    stack: Settings,
    api: httpx.AsyncClient,
    tenant_key: str,  # noqa: F811
    endpoints: list[str],  # noqa: F811
) -> None:
    """Tenant A's eight receivers hang (as many as a worker has delivery slots); tenant B's
    delivery still goes out at once, while A's attempts are still hanging."""
    cap = stack.webhook_max_in_flight_per_tenant
    assert cap < stack.worker_max_concurrent_activities
    other_key = tenant_key  # tenant B: the test's own tenant
    key_a = create_key(stack, f"webhooks-slow-{uuid.uuid4().hex[:12]}")
    endpoints_a: list[str] = []
    try:
        with (
            raw_receiving(RawReceiver("drip_headers")) as drip,
            raw_receiving(RawReceiver("ok")) as good,
        ):
            for n in range(stack.worker_max_concurrent_activities):
                await register(api, key_a, drip.url(f"/a{n}"), endpoints_a)
            await upload(api, key_a, sample_bytes(100), filename="a.txt")

            async def a_holds_its_share() -> None:
                assert drip.open_now >= cap

            await assert_eventually(a_holds_its_share, timeout=30, interval=0.1)
            first_wave_closes = min(c.opened_at for c in drip.connections) + (
                stack.webhook_timeout_seconds
            )

            b = await register(api, other_key, good.url(), endpoints)
            await upload(api, other_key, sample_bytes(100), filename="b.txt")

            async def b_delivered() -> None:
                found = await deliveries(api, other_key, b["id"])
                assert [d["status"] for d in found] == ["delivered"], found

            await assert_eventually(b_delivered, timeout=30, interval=0.1)
            # Before any of A's hanging attempts reached its deadline: B did not wait for A.
            assert time.monotonic() < first_wave_closes
            assert all(c.closed_at is None for c in drip.connections[:cap])
            assert drip.max_open <= cap, drip.max_open
            assert len(drip.connections) <= cap
    finally:
        for webhook_id in endpoints_a:
            await api.delete(f"/v1/webhooks/{webhook_id}", headers=auth(key_a))


async def test_webhook_in_flight_slots_are_shared_by_every_worker(
    stack: Settings,
    sessions: sessionmaker[Session],
    declared_file: Callable[[], Any],
) -> None:
    """Two activity objects (two worker processes, as far as Postgres can tell) share one
    tenant's slots; a lease left by a dead worker lapses; a delivery that finds no slot is
    retried soon, without an attempt counted."""
    settings = stack.model_copy(update={"webhook_max_in_flight_per_tenant": 2})
    worker_1 = WebhookActivities(sessions, settings)
    worker_2 = WebhookActivities(sessions, settings)
    file_id = await declared_file()
    ids = [own_delivery(sessions, file_id, "http://127.0.0.1:9/hook") for _ in range(4)]
    d1, d2, d3, d4 = (uuid.UUID(d) for d in ids)
    with sessions() as session:
        file = session.get(File, uuid.UUID(file_id))
        assert file is not None
        tenant = file.tenant_id

    assert worker_1._claim_slot(tenant, d1)
    assert worker_2._claim_slot(tenant, d2)
    assert not worker_1._claim_slot(tenant, d3)
    assert not worker_2._claim_slot(tenant, d3)

    # The tenant is full: the attempt gives its activity slot back, and counts nothing.
    with pytest.raises(ApplicationError) as busy:
        await run_attempt(worker_2, str(d3))
    assert busy.value.type == BUSY_ERROR and not busy.value.non_retryable
    assert busy.value.next_retry_delay is not None
    assert busy.value.next_retry_delay <= timedelta(
        seconds=settings.webhook_retry_initial_seconds + settings.webhook_timeout_seconds
    )
    row = delivery_row(sessions, str(d3))
    assert row.attempts == 0 and row.last_error is None and row.status == "pending"
    assert row.next_attempt_at is not None

    worker_1._release_slot(d1)
    assert worker_2._claim_slot(tenant, d3)
    # Worker 2 "dies" holding d2: its lease lapses and the slot is taken again.
    with sessions() as session, session.begin():
        session.execute(
            update(WebhookInFlight)
            .where(WebhookInFlight.delivery_id == d2)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert worker_1._claim_slot(tenant, d4)
    for d in (d3, d4):
        worker_1._release_slot(d)


# --- SSRF ---------------------------------------------------------------------------------


class Rebinding:
    """A DNS that answers `first` to the first question and `then` to every later one."""

    def __init__(self, first: str, then: str) -> None:
        self.first, self.then = first, then
        self.questions: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.questions.append((host, port))
        return [self.first if len(self.questions) == 1 else self.then]


async def test_webhook_dns_rebinding_cannot_reach_loopback(
    stack: Settings,
    sessions: sessionmaker[Session],
    declared_file: Callable[[], Any],
) -> None:
    """The name is public when checked and 127.0.0.1 a moment later: the connection goes to
    the public address that was checked (unreachable from here), never to the loopback."""
    strict = stack.model_copy(
        update={"webhook_allow_private_urls": False, "webhook_timeout_seconds": 3}
    )
    with raw_receiving(RawReceiver("ok")) as inside:
        dns = Rebinding(first="2606:4700:4700::1111", then="127.0.0.1")
        activities = WebhookActivities(sessions, strict, resolver=dns)
        delivery_id = own_delivery(
            sessions, await declared_file(), f"http://rebind.example:{inside.port}/hook"
        )
        with pytest.raises(ApplicationError) as failed:
            await run_attempt(activities, delivery_id)
    assert inside.connections == []
    assert dns.questions == [("rebind.example", inside.port)]  # asked once
    assert failed.value.type == UNREACHABLE_ERROR
    row = delivery_row(sessions, delivery_id)
    assert row.status == "pending" and row.attempts == 1


async def test_webhook_connects_to_the_address_it_resolved_with_the_real_host_name(
    stack: Settings,
    sessions: sessionmaker[Session],
    declared_file: Callable[[], Any],
) -> None:
    with (
        raw_receiving(RawReceiver("ok", address="127.0.0.1")) as checked,
        raw_receiving(RawReceiver("ok", address="127.0.0.2", port=0)) as other,
    ):
        dns = Rebinding(first="127.0.0.1", then="127.0.0.2")
        activities = WebhookActivities(sessions, stack, resolver=dns)
        url = f"http://hooks.example:{checked.port}/hook?token=t0k3n"
        delivery_id = own_delivery(sessions, await declared_file(), url)
        result = await run_attempt(activities, delivery_id)
    assert result.status == DeliveryStatus.DELIVERED and result.attempts == 1
    assert len(checked.connections) == 1 and other.connections == []
    assert len(dns.questions) == 1
    assert checked.connections[0].host == f"hooks.example:{checked.port}"
    assert checked.connections[0].request.startswith(b"POST /hook?token=t0k3n HTTP/1.1\r\n")


async def test_webhook_ignores_the_workers_proxy_settings(
    stack: Settings,
    sessions: sessionmaker[Session],
    declared_file: Callable[[], Any],
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    with (
        raw_receiving(RawReceiver("ok")) as receiver,
        raw_receiving(RawReceiver("ok")) as proxy,
    ):
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
            no_proxy_env.setenv(name, f"http://127.0.0.1:{proxy.port}")
        activities = WebhookActivities(sessions, stack)
        delivery_id = own_delivery(sessions, await declared_file(), receiver.url())
        result = await run_attempt(activities, delivery_id)
    assert result.status == DeliveryStatus.DELIVERED
    assert proxy.connections == [] and len(receiver.connections) == 1

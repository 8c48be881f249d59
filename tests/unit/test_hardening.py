"""Pure logic of the API's hardening: the shared readiness probe, the per-tenant stream
slots, event ids, and which routes the Gatekeeper puts behind a key."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from api.errors import ConveyorError, ErrorCode
from api.limits import StreamSlots
from api.middleware import Gatekeeper
from api.probe_cache import SharedProbe
from api.routes import file_events, files, health, uploads, webhooks
from api.routes.file_events import MAX_EVENT_ID, _event_id
from conveyor_core.settings import Settings
from workers.stack.ports import consecutive_ports


async def test_concurrent_callers_share_one_probe_until_it_ages() -> None:
    now = [0.0]
    calls = 0
    release = asyncio.Event()

    async def probe() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return calls

    shared = SharedProbe(probe, max_age=1.5, timer=lambda: now[0])
    waiting = [asyncio.create_task(shared.get()) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == [1] * 20
    now[0] = 1.4
    assert await shared.get() == 1 and calls == 1
    now[0] = 3.0
    assert await shared.get() == 2 and calls == 2


async def test_a_caller_going_away_does_not_cancel_the_shared_probe() -> None:
    release = asyncio.Event()

    async def probe() -> str:
        await release.wait()
        return "ok"

    shared = SharedProbe(probe, max_age=1.0)
    impatient = asyncio.create_task(shared.get())
    await asyncio.sleep(0)
    impatient.cancel()
    patient = asyncio.create_task(shared.get())
    await asyncio.sleep(0)
    release.set()
    assert await patient == "ok"


def test_one_upload_token_holds_only_a_few_of_its_tenants_streams() -> None:
    slots = StreamSlots(per_tenant=5, per_token=2)
    tenant, browser, other_browser = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with slots.hold(tenant, browser), slots.hold(tenant, browser):
        with pytest.raises(ConveyorError) as refused:
            with slots.hold(tenant, browser):
                pass
        assert refused.value.code == ErrorCode.TOO_MANY_STREAMS
        assert slots.open_streams(tenant) == 2  # the refused one took no tenant slot
        with slots.hold(tenant, other_browser):  # the app's other users still get theirs
            assert slots.open_streams(tenant) == 3
    assert slots.open_streams(tenant) == 0 and slots.open_streams(browser) == 0


def test_stream_slots_refuse_past_the_cap_and_come_back() -> None:
    slots = StreamSlots(per_tenant=2)
    tenant, other = uuid.uuid4(), uuid.uuid4()
    with slots.hold(tenant), slots.hold(tenant):
        with pytest.raises(ConveyorError) as refused:
            with slots.hold(tenant):
                pass
        assert refused.value.code == ErrorCode.TOO_MANY_STREAMS
        assert refused.value.headers["Retry-After"]
        with slots.hold(other):  # another tenant's streams are its own
            pass
    assert slots.open_streams(tenant) == 0
    with slots.hold(tenant):
        assert slots.open_streams(tenant) == 1


@pytest.mark.parametrize("value", ["0", "17", str(MAX_EVENT_ID), " 5 ", 0, MAX_EVENT_ID])
def test_event_ids_in_a_bigint_are_taken(value: str | int) -> None:
    assert _event_id(value) == int(value)


@pytest.mark.parametrize(
    "value", [str(MAX_EVENT_ID + 1), "99999999999999999999", "-1", "1_000", "５", "", -1, 2**63]
)
def test_event_ids_outside_a_bigint_are_refused(value: str | int) -> None:
    with pytest.raises(ConveyorError) as refused:
        _event_id(value)
    assert refused.value.code == ErrorCode.INVALID_LAST_EVENT_ID


def test_every_route_with_a_tenant_is_behind_the_gatekeeper() -> None:
    routers = [health.router, uploads.router, files.router, file_events.router, webhooks.router]
    gate = Gatekeeper(lambda *_: None, Settings(environment="test"), routers)  # type: ignore[arg-type,return-value]

    def keyed(method: str, path: str) -> bool:
        return gate._needs_key({"type": "http", "method": method, "path": path, "root_path": ""})

    for method, path in [
        ("POST", "/v1/uploads"),
        ("POST", f"/v1/uploads/{uuid.uuid4()}/complete"),
        ("GET", "/v1/files"),
        ("GET", f"/v1/files/{uuid.uuid4()}/events"),
        ("DELETE", f"/v1/webhooks/{uuid.uuid4()}"),
        ("PUT", "/v1/uploads"),  # a keyed path with another method: 405 once authenticated
    ]:
        assert keyed(method, path), (method, path)
    for method, path in [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
        ("GET", "/v1/nothing-here"),
    ]:
        assert not keyed(method, path), (method, path)


def test_the_api_metrics_port_is_one_of_the_derived_ports() -> None:
    ports = consecutive_ports(21100)
    assert "api_metrics_port" in ports
    assert len(set(ports.values())) == len(ports)
    assert max(ports.values()) < 21200  # inside its test slot's block of 100

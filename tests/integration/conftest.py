"""One real local stack for the whole test session: its own ports and state directory,
started through the same manager as `conveyor stack up`, stopped and removed at the end."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from activities.thumbnails import ThumbnailActivities
from activities.verify import sniff_content_type
from conveyor_core.db.session import make_engine, make_session_factory
from conveyor_core.objectstore import make_s3_client
from conveyor_core.settings import Settings
from conveyor_core.types import BlobRef
from workers.stack import manage
from workers.stack.environment import settings_env
from workers.stack.ports import consecutive_ports

REPO = Path(__file__).resolve().parents[2]


def _test_settings(state_dir: Path) -> Settings:
    """Ports of their own (CONVEYOR_TEST_SLOT picks another block, for parallel runs), so a
    developer's own stack keeps running while the tests do."""
    slot = int(os.environ.get("CONVEYOR_TEST_SLOT", "0"))
    return Settings(
        environment="test",
        state_dir=state_dir,
        reconcile_after_seconds=8,
        upload_url_ttl_seconds=120,
        upload_expiry_seconds=3600,
        scan_max_bytes=80 * 1024 * 1024,  # small enough for a test to go over it
        events_stream_seconds=4,  # so a test sees a client resume a stream the server ended
        # Long, so a test that sees a revoked key refused at once sees the notification do it.
        api_key_cache_seconds=600,
        # Webhook retries every 1-2 s, so a receiver coming back is seen within seconds.
        webhook_retry_initial_seconds=1,
        webhook_retry_max_interval_seconds=2,
        # Few, so a test holds every stream slot of a tenant with a handful of streams.
        api_max_streams_per_tenant=8,
        webhook_allow_private_urls=True,  # the tests' receivers listen on 127.0.0.1
        **consecutive_ports(21000 + 100 * slot),
    )


@pytest.fixture(scope="session")
def stack() -> Iterator[Settings]:
    state_dir = Path(tempfile.mkdtemp(prefix="conveyor-test-"))
    state_dir.chmod(0o755)  # the postgres user must reach its data directory inside
    settings = _test_settings(state_dir)
    try:
        manage.up(settings, timeout=180)
        yield settings
        # Tests stop and start programs on purpose; none may ever have crashed.
        log = (state_dir / "logs" / "supervisord.log").read_text()
        crashes = [line for line in log.splitlines() if "not expected" in line]
        assert crashes == [], crashes
    finally:
        manage.down(settings)
        if os.environ.get("CONVEYOR_TEST_KEEP_STATE") != "1":  # keep logs for a post-mortem
            shutil.rmtree(state_dir, ignore_errors=True)


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs the real `conveyor` command against the test stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(settings_env(settings))
    return subprocess.run(
        [str(Path(sys.executable).parent / "conveyor"), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def create_key(settings: Settings, tenant: str) -> str:
    return run_cli(settings, "keys", "create", "--tenant", tenant).stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def key_a(stack: Settings) -> str:
    return create_key(stack, "tenant-a")


@pytest.fixture(scope="session")
def key_b(stack: Settings) -> str:
    return create_key(stack, "tenant-b")


@pytest.fixture(scope="session")
def engine(stack: Settings) -> Iterator[Engine]:
    engine = make_engine(stack)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture(scope="session")
def s3(stack: Settings):  # type: ignore[no-untyped-def]
    return make_s3_client(stack)


@pytest.fixture
def thumbnails(stack: Settings, s3: Any) -> ThumbnailActivities:
    return ThumbnailActivities(s3, stack)


@pytest.fixture
def blob_in_store(stack: Settings, s3: Any) -> Callable[..., BlobRef]:
    """Puts bytes in the test stack's store, as a blob the stages' activities can be given
    (typed as libmagic sniffs them, unless told)."""

    def put(data: bytes, content_type: str | None = None) -> BlobRef:
        key = f"tests/stages/{uuid.uuid4()}"  # outside incoming/: no relay or sweeper
        s3.put_object(Bucket=stack.bucket, Key=key, Body=data)
        return BlobRef(
            bucket=stack.bucket,
            key=key,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            content_type=content_type or sniff_content_type(data[:65536]),
        )

    return put


@pytest_asyncio.fixture(loop_scope="session")
async def api(stack: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def temporal(stack: Settings) -> Client:
    return await Client.connect(stack.temporal_target, namespace=stack.temporal_namespace)


def _live_endpoints(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT id::text, url FROM webhook_endpoint WHERE deleted_at IS NULL")
        )
        return {row.id: row.url for row in rows}


@pytest.fixture(autouse=True)
def no_webhook_endpoint_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every webhook endpoint a test registers, it deletes. One left behind is retried for
    every later upload of its tenant, every 1-2 s with the test settings and for the whole
    delivery deadline: the deliveries piled up over the session until the last tests
    starved (the first integration test once left one on the shared tenant-a)."""
    if "stack" not in request.fixturenames:
        yield
        return
    engine: Engine = request.getfixturevalue("engine")
    before = _live_endpoints(engine)
    yield
    left = {i: url for i, url in _live_endpoints(engine).items() if i not in before}
    assert not left, f"the test left webhook endpoints registered: {left}"


async def delete_webhooks(api: httpx.AsyncClient, key: str) -> None:
    """Deletes every webhook endpoint of the key's tenant."""
    headers = {"Authorization": f"Bearer {key}"}
    listed = await api.get("/v1/webhooks", headers=headers)
    assert listed.status_code == 200, listed.text
    for webhook in listed.json()["webhooks"]:
        deleted = await api.delete(f"/v1/webhooks/{webhook['id']}", headers=headers)
        assert deleted.status_code == 204, deleted.text


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keeps each phase's report on the test (`item.rep_call`), for fixtures that save what
    a failed test saw (the browser tests' screenshots)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report

"""Chaos: SIGKILL every process of the stack in turn while mixed uploads are in flight.

Clients behave like real ones (each request retried on a connection error, 5xx or 429 with
jittered backoff). Meanwhile each component (worker, relay, adapter, api, temporal, nats,
postgres, clamd, seaweedfs, edge) is killed with SIGKILL in turn (its real pid from
supervisord: the postmaster, nginx's master) and supervisord brings it back; optionally the
adapter is also stopped for a while (store events dropped). Then every file must reach the
terminal state its content calls for, and the end state is checked (`bench.chaos_checks`).

Per fault it reports, in seconds from the kill:
  back     supervisord shows a new pid RUNNING and the stack's readiness check passes
           (workers/stack/readiness.py);
  serves   the component does its job again: api answers an authenticated request; worker
           has pollers of its new pid on the ingest, scan and media queues; relay has a pull
           request waiting on its JetStream consumer; adapter answers; every server: the
           API's /readyz (its own pooled clients reconnected) is 200;
  canary   a small upload started at the kill is `ready` (the whole chain, end to end);
and files: `in flight` (created before the kill, terminal after it) and `affected` (files
with a client retry, an activity retry, a timed-out activity or workflow task, or a
reconcile instead of a store event, blamed on this fault: the first one that struck within
that disturbance's span, else the last one before it; see chaos_checks.disturbances).
With --rounds > 1 the times are medians and the file counts sums.

By default it starts a throwaway stack of its own (its own ports and state directory, short
reconcile and upload expiry so lost events and orphaned uploads settle within the run) and
removes it afterwards; --existing uses the stack of the CONVEYOR_* settings instead.

    .venv/bin/python -m bench.chaos [--files 200] [--clients 16] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client as TemporalClient

from bench import chaos_samples
from bench.chaos_checks import EndState, blamed, check_end_state, disturbances, wait_for_drain
from bench.chaos_samples import Sample
from conveyor_core.db.models import File, Tenant
from conveyor_core.db.models import Upload as UploadRow
from conveyor_core.db.session import make_engine, make_session_factory
from conveyor_core.objectstore import make_s3_client
from conveyor_core.settings import Settings, get_settings
from workers.cli import create_key
from workers.stack import manage
from workers.stack.layout import StackLayout
from workers.stack.ports import consecutive_ports
from workers.stack.readiness import readiness_checks
from workers.stack.supervisor_client import Supervisor

COMPONENTS = (
    "worker",
    "relay",
    "adapter",
    "api",
    "temporal",
    "nats",
    "postgres",
    "clamd",
    "seaweedfs",
    "edge",
)
ADAPTER_STOPPED = "adapter (stopped)"
RECOVERY_TIMEOUT = 120.0
REQUEST_DEADLINE = 180.0  # a client gives one request this long, retries included
TENANTS = 4
# From a file turning `processing` (claimed) to its stages' activities running.
STAGES_UNDER_WAY_S = 0.3


@dataclass
class Upload:
    sample: Sample
    tenant: int
    started_at: float = 0.0  # wall clock
    file_id: str | None = None
    method: str | None = None
    sent_at: float | None = None  # bytes in the store (or nothing to send)
    retries: list[tuple[float, str]] = field(default_factory=list)
    ambiguous_creates: int = 0  # create answers lost after the request was sent
    error: str | None = None


@dataclass
class Fault:
    component: str
    at: float  # wall clock of the kill (or stop)
    pid: int
    new_pid: int | None = None
    back_s: float | None = None
    serves_s: float | None = None
    canary: Upload | None = None
    canary_s: float | None = None
    canary_task: asyncio.Task[None] | None = None


@dataclass
class Config:
    files: int = 200
    clients: int = 16
    rounds: int = 1
    # A batch of uploads starts before each fault, which comes once one of them is
    # `processing` (its stages run), or at the latest this long after.
    lead_s: float = 3.0
    gap_s: float = 2.0  # at least this long between one fault's recovery and the next
    adapter_stop_s: float = 10.0  # 0: no adapter-stopped phase
    drain_timeout_s: float = 300.0


@dataclass
class Report:
    faults: list[Fault]
    uploads: list[Upload]
    end: EndState
    drain_s: float
    elapsed_s: float


class GaveUp(Exception):
    pass


# --- the stack ---------------------------------------------------------------------------


def chaos_settings(state_dir: Path, base_port: int) -> Settings:
    """A stack of its own: short reconcile (a dropped event costs seconds, not minutes) and a
    short upload expiry (an upload orphaned by a lost create answer expires within the run)."""
    values: dict[str, Any] = {
        "environment": "test",
        "state_dir": state_dir,
        "reconcile_after_seconds": 4,
        "upload_expiry_seconds": 45,
        "upload_url_ttl_seconds": 600,
        **consecutive_ports(base_port),
    }
    return Settings(**values)


@contextlib.contextmanager
def own_stack(base_port: int, keep: bool = False) -> Iterator[Settings]:
    state_dir = Path(tempfile.mkdtemp(prefix="conveyor-chaos-"))
    state_dir.chmod(0o755)  # the postgres user must reach its data directory inside
    settings = chaos_settings(state_dir, base_port)
    try:
        manage.up(settings, timeout=240)
        yield settings
    finally:
        manage.down(settings)
        if not keep:
            shutil.rmtree(state_dir, ignore_errors=True)


class Stack:
    """The running stack as the chaos run sees it: supervisord, readiness, the API, Temporal."""

    def __init__(self, settings: Settings, temporal: TemporalClient, key: str) -> None:
        self.settings = settings
        self.layout = StackLayout.of(settings)
        self.supervisor = Supervisor(self.layout)
        self.checks = readiness_checks(settings, self.layout)
        self.temporal = temporal
        self.key = key

    def info(self, program: str) -> dict[str, Any]:
        return next(p for p in self.supervisor.processes() if p["name"] == program)

    def pid(self, program: str) -> int:
        return int(self.info(program)["pid"])

    def back(self, program: str, old_pid: int) -> int | None:
        """The new pid once the program runs again and answers its readiness check."""
        info = self.info(program)
        if info["statename"] != "RUNNING" or info["pid"] in (0, old_pid):
            return None
        try:
            return int(info["pid"]) if self.checks[program]() else None
        except Exception:  # a probe failing just means "not yet"
            return None

    async def serves(self, program: str, pid: int, api: httpx.AsyncClient) -> bool:
        try:
            if program == "api":
                answer = await api.get("/v1/files", params={"limit": 1}, headers=self.auth)
                return answer.status_code == 200
            if program == "worker":
                return await self._worker_polls(pid)
            if program == "relay":
                return await self._relay_waits()
            if program == "adapter":
                return True  # its readiness (healthz) answers only once it reached NATS
            return (await api.get("/readyz")).status_code == 200
        except (httpx.TransportError, RuntimeError):
            return False

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def _worker_polls(self, pid: int) -> bool:
        s = self.settings
        for queue in (s.ingest_task_queue, s.scan_task_queue, s.media_task_queue):
            described = await self.temporal.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=s.temporal_namespace,
                    task_queue=TaskQueue(name=queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                )
            )
            if not any(p.identity.startswith(f"{pid}@") for p in described.pollers):
                return False
        return True

    async def _relay_waits(self) -> bool:
        url = f"{self.settings.nats_monitor}/jsz?consumers=true"
        async with httpx.AsyncClient(timeout=2) as client:
            body = (await client.get(url)).json()
        for account in body.get("account_details", []):
            for stream in account.get("stream_detail", []):
                for consumer in stream.get("consumer_detail") or []:
                    if consumer.get("name") == self.settings.relay_durable:
                        return int(consumer.get("num_waiting", 0)) > 0
        return False


# --- clients -----------------------------------------------------------------------------


def _ambiguous(error: httpx.TransportError) -> bool:
    """The request may have reached the server (its answer was lost)."""
    return not isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)


async def with_retries(
    upload: Upload, what: str, send: Callable[[], Awaitable[httpx.Response]]
) -> httpx.Response:
    """What a real client does: retry a connection error, 5xx or 429 with jittered backoff."""
    deadline = time.monotonic() + REQUEST_DEADLINE
    attempt = 0
    while True:
        try:
            response = await send()
            if response.status_code < 500 and response.status_code != 429:
                return response
            reason = f"{response.status_code}"
        except httpx.TransportError as e:
            reason = type(e).__name__
            if what == "create" and _ambiguous(e):
                upload.ambiguous_creates += 1
        upload.retries.append((time.time(), f"{what}: {reason}"))
        if time.monotonic() > deadline:
            raise GaveUp(f"{what}: still {reason} after {REQUEST_DEADLINE:g} s")
        await asyncio.sleep(min(3.0, 0.2 * 2**attempt) * random.uniform(0.5, 1.0))
        attempt += 1


class Clients:
    """Declares each upload and sends its bytes (create and PUT retried as a client would).

    A create whose answer is lost is simply retried: the first try may have made a file the
    client never hears of. Such an orphan is never sent bytes and expires (upload expiry),
    which the end-state check verifies (`EndState.orphans`).
    """

    def __init__(self, settings: Settings, keys: list[str]) -> None:
        self.settings = settings
        self.keys = keys
        self.api = httpx.AsyncClient(base_url=settings.api_url, timeout=30)
        self.store = httpx.AsyncClient(timeout=30)
        self.s3 = make_s3_client(settings)
        self.sessions = make_session_factory(make_engine(settings, pool_size=2))

    async def close(self) -> None:
        await self.api.aclose()
        await self.store.aclose()

    async def run(self, upload: Upload) -> None:
        upload.started_at = time.time()
        try:
            await self._send(upload)
        except GaveUp as e:
            upload.error = str(e)

    async def _send(self, upload: Upload) -> None:
        sample = upload.sample
        body: dict[str, Any] = {
            "filename": sample.filename,
            "size": sample.size,
            "content_type": sample.content_type,
            "visibility": sample.visibility,
        }
        if sample.declared_size is None:
            body["sha256"] = sample.sha256
        headers = {"Authorization": f"Bearer {self.keys[upload.tenant]}"}
        created = await with_retries(
            upload, "create", lambda: self.api.post("/v1/uploads", json=body, headers=headers)
        )
        if created.status_code != 201:
            upload.error = f"create answered {created.status_code}: {created.text}"
            return
        answer = created.json()
        upload.file_id, upload.method = answer["file_id"], answer["method"]
        if upload.method == "PUT" and sample.declared_size is not None:
            await self._write_short(upload, answer["upload_id"])
        elif upload.method == "PUT":
            sent = await with_retries(
                upload,
                "put",
                lambda: self.store.put(
                    answer["url"], content=sample.content, headers=answer["headers"]
                ),
            )
            if sent.status_code != 200:
                upload.error = f"PUT answered {sent.status_code}: {sent.text[:200]}"
                return
        upload.sent_at = time.time()

    async def _write_short(self, upload: Upload, upload_id: str) -> None:
        """Fails by design: a store that does not enforce the signed length gets fewer bytes
        than declared (written straight to the key, as tests/integration does)."""

        def write() -> None:
            with self.sessions() as session:
                row = session.get(UploadRow, uuid.UUID(upload_id))
                assert row is not None
                bucket, key = row.bucket, row.object_key
            self.s3.put_object(
                Bucket=bucket, Key=key, Body=upload.sample.content, ContentType="text/plain"
            )

        deadline = time.monotonic() + REQUEST_DEADLINE
        while True:
            try:
                await asyncio.to_thread(write)
                return
            except Exception as e:  # the store or Postgres is down: retry as for a PUT
                upload.retries.append((time.time(), f"direct put: {type(e).__name__}"))
                if time.monotonic() > deadline:
                    raise GaveUp(f"direct put: {e}") from e
                await asyncio.sleep(1.0)

    async def wait_ready(self, upload: Upload, timeout: float = RECOVERY_TIMEOUT) -> float | None:
        """Seconds until the file is terminal (polled through the API), None at the timeout."""
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {self.keys[upload.tenant]}"}
        while time.monotonic() < deadline:
            if upload.file_id is not None:
                try:
                    got = await self.api.get(f"/v1/files/{upload.file_id}", headers=headers)
                    if got.status_code == 200 and got.json()["status"] not in (
                        "awaiting_upload",
                        "processing",
                    ):
                        return time.time()
                except httpx.TransportError:
                    pass
            elif upload.error is not None:
                return None
            await asyncio.sleep(0.25)
        return None


# --- faults ------------------------------------------------------------------------------


async def inject(stack: Stack, clients: Clients, component: str, config: Config) -> Fault:
    """Kills (or, for the adapter-stopped phase, stops) one component and measures its
    recovery. A canary upload starts at the kill."""
    program = "adapter" if component == ADAPTER_STOPPED else component
    pid = await asyncio.to_thread(stack.pid, program)
    canary = Upload(chaos_samples.text("canary"), tenant=0)
    fault = Fault(component, time.time(), pid, canary=canary)
    started = time.monotonic()
    if component == ADAPTER_STOPPED:
        await asyncio.to_thread(manage.supervisorctl, stack.settings, "stop", "adapter")
    else:
        os.kill(pid, signal.SIGKILL)
    fault.canary_task = asyncio.create_task(_canary(clients, fault))
    if component == ADAPTER_STOPPED:
        await asyncio.sleep(config.adapter_stop_s)
        await asyncio.to_thread(manage.supervisorctl, stack.settings, "start", "adapter")
    while time.monotonic() - started < RECOVERY_TIMEOUT:
        new_pid = await asyncio.to_thread(stack.back, program, pid)
        if new_pid is not None:
            fault.new_pid, fault.back_s = new_pid, time.monotonic() - started
            break
        await asyncio.sleep(0.05)
    while fault.new_pid is not None and time.monotonic() - started < RECOVERY_TIMEOUT:
        if await stack.serves(program, fault.new_pid, clients.api):
            fault.serves_s = time.monotonic() - started
            break
        await asyncio.sleep(0.1)
    return fault


async def _canary(clients: Clients, fault: Fault) -> None:
    assert fault.canary is not None
    await clients.run(fault.canary)
    finished = await clients.wait_ready(fault.canary)
    if finished is not None:
        fault.canary_s = finished - fault.at


# --- the run -----------------------------------------------------------------------------


async def run(settings: Settings, config: Config) -> Report:
    began = time.monotonic()
    tenant_names = [f"chaos-{uuid.uuid4().hex[:8]}-{i}" for i in range(TENANTS)]
    keys = [await asyncio.to_thread(create_key, settings, name) for name in tenant_names]
    temporal = await TemporalClient.connect(
        settings.temporal_target, namespace=settings.temporal_namespace
    )
    stack = Stack(settings, temporal, keys[0])
    clients = Clients(settings, keys)
    uploads = [
        Upload(sample, tenant=i % TENANTS)
        for i, sample in enumerate(chaos_samples.mixed(config.files))
    ]
    plan = [c for _ in range(config.rounds) for c in COMPONENTS]
    if config.adapter_stop_s > 0:
        plan.append(ADAPTER_STOPPED)
    try:
        faults = await _faults(stack, clients, uploads, plan, config)
        await asyncio.gather(*(f.canary_task for f in faults if f.canary_task is not None))
        # Draining starts once the last fault is over and the last bytes were sent.
        calm_since = max(
            [f.at + (f.serves_s or f.back_s or 0) for f in faults]
            + [u.sent_at for u in uploads if u.sent_at is not None]
        )
        everything = uploads + [f.canary for f in faults if f.canary is not None]
        tenant_ids = await asyncio.to_thread(_tenant_ids, settings, tenant_names)
        drained_at = await wait_for_drain(
            settings, temporal, tenant_ids, everything, config.drain_timeout_s
        )
        end = await check_end_state(settings, temporal, tenant_ids, everything, keys)
        await disturbances(temporal, everything, end)
    finally:
        await clients.close()
    return Report(
        faults=faults,
        uploads=everything,
        end=end,
        drain_s=max(0.0, drained_at - calm_since),
        elapsed_s=time.monotonic() - began,
    )


def _tenant_ids(settings: Settings, names: list[str]) -> list[uuid.UUID]:
    sessions = make_session_factory(make_engine(settings, pool_size=1))
    with sessions() as session:
        return list(session.execute(select(Tenant.id).where(Tenant.name.in_(names))).scalars())


async def _faults(
    stack: Stack, clients: Clients, uploads: list[Upload], plan: list[str], config: Config
) -> list[Fault]:
    """Before each fault a batch of uploads starts (at most `clients` at once), and the fault
    comes `lead_s` later, with that batch's creates, PUTs and processing under way; the
    last batch starts after the last fault. Each fault waits for the previous one's
    component to serve again."""
    slots = asyncio.Semaphore(config.clients)

    async def one(upload: Upload) -> None:
        async with slots:
            await clients.run(upload)

    batches = [uploads[i :: len(plan) + 1] for i in range(len(plan) + 1)]
    started: list[asyncio.Task[None]] = []
    faults: list[Fault] = []
    for component, batch in zip(plan, batches, strict=False):
        started += [asyncio.create_task(one(u)) for u in batch]
        await _until_processing(clients, batch, config.lead_s)
        fault = await inject(stack, clients, component, config)
        faults.append(fault)
        print(
            f"  {component:<18} pid {fault.pid} -> {fault.new_pid}: back {_s(fault.back_s)} s,"
            f" serves {_s(fault.serves_s)} s",
            flush=True,
        )
        await asyncio.sleep(config.gap_s)
    started += [asyncio.create_task(one(u)) for u in batches[-1]]
    await asyncio.gather(*started)
    return faults


async def _until_processing(clients: Clients, batch: list[Upload], timeout: float) -> None:
    """Until one file of the batch is `processing` (its stages run) or `timeout` passed."""
    deadline = time.monotonic() + timeout

    def any_processing() -> bool:
        ids = [uuid.UUID(u.file_id) for u in batch if u.file_id]
        with clients.sessions() as session:
            found = session.execute(
                select(File.id).where(File.id.in_(ids), File.status == "processing").limit(1)
            )
            return found.first() is not None

    while time.monotonic() < deadline:
        try:
            if await asyncio.to_thread(any_processing):
                await asyncio.sleep(STAGES_UNDER_WAY_S)
                return
        except Exception:  # Postgres coming back from the previous fault: just wait
            pass
        await asyncio.sleep(0.05)


# --- the report --------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    if not known or len(known) < len(values):
        return None  # one that never recovered makes the median meaningless: show "-"
    return statistics.median(known)


@dataclass(frozen=True)
class Row:
    component: str
    kills: int
    back_s: float | None
    serves_s: float | None
    canary_s: float | None
    in_flight: int
    affected: int


def rows(report: Report) -> list[Row]:
    by_component: dict[str, list[int]] = {}
    for i, fault in enumerate(report.faults):
        by_component.setdefault(fault.component, []).append(i)
    out = []
    for component, indices in by_component.items():
        faults = [report.faults[i] for i in indices]
        out.append(
            Row(
                component=component,
                kills=len(faults),
                back_s=_median([f.back_s for f in faults]),
                serves_s=_median([f.serves_s for f in faults]),
                canary_s=_median([f.canary_s for f in faults]),
                in_flight=sum(_in_flight(report, i) for i in indices),
                affected=sum(_affected(report, i) for i in indices),
            )
        )
    return out


def _in_flight(report: Report, i: int) -> int:
    at = report.faults[i].at
    return sum(
        1
        for u in report.uploads
        if u.file_id
        and u.started_at <= at
        and report.end.terminal_at.get(u.file_id, float("inf")) > at
    )


def _affected(report: Report, i: int) -> int:
    faults_at = [f.at for f in report.faults]
    return sum(
        1
        for spans in report.end.disturbed.values()
        if any(blamed(span, faults_at) == i for span in spans)
    )


def render(report: Report) -> str:
    lines = [
        f"{'component':<18} {'kills':>5} {'back s':>7} {'serves s':>9} {'canary s':>9}"
        f" {'in flight':>10} {'affected':>9}"
    ]
    for row in rows(report):
        lines.append(
            f"{row.component:<18} {row.kills:>5} {_s(row.back_s):>7} {_s(row.serves_s):>9}"
            f" {_s(row.canary_s):>9} {row.in_flight:>10} {row.affected:>9}"
        )
    end = report.end
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(end.statuses.items()))
    lines += [
        "",
        f"files: {len(report.uploads)} ({statuses}); disturbed:"
        f" {len(end.disturbed)}; client retries: {sum(len(u.retries) for u in report.uploads)}"
        f"; create answers lost: {sum(u.ambiguous_creates for u in report.uploads)}",
        f"orphaned uploads (created, answer lost): {len(end.orphans)}"
        f" ({', '.join(sorted(end.orphans.values())) or 'none'}); workflows whose row was"
        f" never committed: {len(end.rowless)}",
        f"drain (last recovery -> last file terminal): {report.drain_s:.1f} s;"
        f" whole run {report.elapsed_s:.1f} s",
        f"end-state problems: {len(end.problems)}",
        *(f"  - {p}" for p in end.problems),
    ]
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> None:
    config = Config(
        files=args.files,
        clients=args.clients,
        rounds=args.rounds,
        lead_s=args.lead,
        adapter_stop_s=args.adapter_stop,
    )
    if args.existing:
        report = await run(get_settings(), config)
    else:
        with own_stack(args.base_port, keep=args.keep) as settings:
            report = await run(settings, config)
    print(render(report))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1, help="kill every component this often")
    parser.add_argument(
        "--lead", type=float, default=3.0, help="longest wait from a batch to its fault"
    )
    parser.add_argument("--adapter-stop", type=float, default=10.0, help="0: skip that phase")
    parser.add_argument("--existing", action="store_true", help="use the CONVEYOR_* stack")
    parser.add_argument("--base-port", type=int, default=21950, help="the own stack's ports")
    parser.add_argument("--keep", action="store_true", help="keep the own stack's state dir")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()

"""The end state a chaos run must leave, and what each file went through on the way.

Invariants (each violation is one line in `EndState.problems`):
- every upload a client made reached a terminal status, the one its content calls for:
  `ready` with the content's sha256 and size (images with thumbnails and OCR, PDFs with
  OCR), `quarantined` for EICAR, `failed` with the verify reason for a short object;
- the API shows every file as Postgres holds it;
- one file row per upload; a row no client heard of (its create answer was lost) is an
  orphaned upload, which must have expired without bytes;
- one blob per sha256 (the primary key), holding the bytes at its key in the store (ready),
  or in the quarantine bucket and nowhere else (quarantined);
- nothing under `incoming/<tenant>/` but the objects ready or failed blobs hold (a
  duplicate's, a rejected or expired upload's, a quarantined object are gone);
- every file's workflow completed; none of the tenants' ingest workflows still running,
  failed or timed out; those whose row was never committed (the API failed between
  starting the workflow and committing) terminated by the API, or expired and completed;
- public files are served by the edge with their bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from botocore.exceptions import ClientError
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowExecutionStatus

from conveyor_core.db.models import Blob, File
from conveyor_core.db.models import Upload as UploadRow
from conveyor_core.db.session import make_engine, make_session_factory
from conveyor_core.objectstore import make_s3_client
from conveyor_core.settings import Settings

if TYPE_CHECKING:
    from bench.chaos import Upload

NON_TERMINAL = ("awaiting_upload", "processing")
# await_blob polls by design (a duplicate waits for its blob's owner): its retries are no fault.
POLLING_ACTIVITIES = {"await_blob"}


@dataclass
class EndState:
    statuses: dict[str, int] = field(default_factory=dict)
    terminal_at: dict[str, float] = field(default_factory=dict)  # file id -> wall clock
    orphans: dict[str, str] = field(default_factory=dict)  # file id -> status
    rowless: list[str] = field(default_factory=list)  # ingest workflows without a file row
    problems: list[str] = field(default_factory=list)
    # file id -> spans within which a fault disturbed it (see `disturbances`)
    disturbed: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class FileRow:
    id: str
    tenant_id: uuid.UUID
    status: str
    detail: str | None
    sha256: str | None
    size: int | None
    workflow_id: str
    updated_at: float


def _rows(settings: Settings, tenant_ids: list[uuid.UUID]) -> dict[str, FileRow]:
    sessions = make_session_factory(make_engine(settings, pool_size=1))
    with sessions() as session:
        found = session.execute(select(File).where(File.tenant_id.in_(tenant_ids))).scalars()
        return {
            str(f.id): FileRow(
                id=str(f.id),
                tenant_id=f.tenant_id,
                status=f.status,
                detail=f.status_detail,
                sha256=f.sha256,
                size=f.size,
                workflow_id=f.workflow_id,
                updated_at=f.updated_at.timestamp(),
            )
            for f in found
        }


async def wait_for_drain(
    settings: Settings,
    temporal: TemporalClient,
    tenant_ids: list[uuid.UUID],
    uploads: list[Upload],
    timeout: float,
) -> float:
    """Waits until every file of the tenants is terminal (orphans too: they expire) and none
    of their ingest workflows runs (one whose row was never committed expires too); returns
    when the last file got there (wall clock), or now at the timeout."""
    deadline = time.monotonic() + timeout
    expected = {u.file_id for u in uploads if u.file_id}
    while True:
        try:
            rows = await asyncio.to_thread(_rows, settings, tenant_ids)
        except Exception:  # Postgres may still be coming back
            rows = {}
        done = rows and expected <= set(rows)
        if done and all(r.status not in NON_TERMINAL for r in rows.values()):
            if not await _running_ingests(temporal, tenant_ids):
                return max(r.updated_at for r in rows.values())
        if time.monotonic() > deadline:
            return time.time()
        await asyncio.sleep(1.0)


def _tenants_query(tenant_ids: list[uuid.UUID]) -> str:
    tenants = ", ".join(f"'{t}'" for t in tenant_ids)
    return f"WorkflowType = 'IngestWorkflow' AND ConveyorTenant IN ({tenants})"


async def _running_ingests(temporal: TemporalClient, tenant_ids: list[uuid.UUID]) -> list[str]:
    query = _tenants_query(tenant_ids) + " AND ExecutionStatus = 'Running'"
    return [wf.id async for wf in temporal.list_workflows(query)]


async def check_end_state(
    settings: Settings,
    temporal: TemporalClient,
    tenant_ids: list[uuid.UUID],
    uploads: list[Upload],
    keys: list[str],
) -> EndState:
    end = EndState()
    rows = await asyncio.to_thread(_rows, settings, tenant_ids)
    known = {u.file_id: u for u in uploads if u.file_id}
    for u in uploads:
        if u.error or not u.file_id:
            end.problems.append(f"{u.sample.kind} {u.sample.filename}: client failed: {u.error}")
    for file_id, u in known.items():
        row = rows.get(file_id)
        if row is None:
            end.problems.append(f"{file_id} ({u.sample.kind}): no file row (lost)")
            continue
        end.statuses[row.status] = end.statuses.get(row.status, 0) + 1
        if row.status not in NON_TERMINAL:
            end.terminal_at[file_id] = row.updated_at
        end.problems += _matches_content(row, u)
    for file_id, row in rows.items():
        if file_id not in known:
            end.orphans[file_id] = row.status
            if row.status != "expired":
                end.problems.append(f"orphaned upload {file_id} is {row.status}, not expired")
    s3 = make_s3_client(settings)
    end.problems += await asyncio.to_thread(_blobs_hold_bytes, settings, s3, rows, known)
    end.problems += await asyncio.to_thread(_incoming_clean, settings, s3, tenant_ids)
    end.problems += await _api_agrees(settings, rows, known, keys)
    end.problems += await _workflows_closed(temporal, rows, tenant_ids, end)
    return end


def _matches_content(row: FileRow, u: Upload) -> list[str]:
    sample = u.sample
    where = f"{row.id} ({sample.kind} {sample.filename})"
    if row.status in NON_TERMINAL:
        return [f"{where}: still {row.status}"]
    if row.status != sample.expect:
        return [f"{where}: {row.status} ({row.detail}), expected {sample.expect}"]
    if sample.expect == "ready" and (row.sha256 != sample.sha256 or row.size != sample.size):
        return [f"{where}: ready with sha256 {row.sha256} size {row.size}, not its content's"]
    if sample.expect == "failed" and "size mismatch" not in (row.detail or ""):
        return [f"{where}: failed for another reason: {row.detail}"]
    return []


def _blobs_hold_bytes(
    settings: Settings, s3: Any, rows: dict[str, FileRow], known: dict[str, Upload]
) -> list[str]:
    problems: list[str] = []
    shas = {r.sha256 for r in rows.values() if r.sha256 and r.status in ("ready", "quarantined")}
    sessions = make_session_factory(make_engine(settings, pool_size=1))
    with sessions() as session:
        blobs = {
            b.sha256: (b.status, b.bucket, b.object_key)
            for b in session.execute(select(Blob).where(Blob.sha256.in_(shas))).scalars()
        }
    sizes = {u.sample.sha256: len(u.sample.content) for u in known.values()}
    for row in rows.values():
        if row.status not in ("ready", "quarantined") or row.sha256 is None:
            continue
        blob = blobs.get(row.sha256)
        if blob is None or blob[0] != row.status:
            problems.append(f"{row.id}: {row.status}, but its blob is {blob and blob[0]}")
    for sha, (status, bucket, key) in blobs.items():
        if status == "ready":
            size = _head(s3, bucket, key)
            if size != sizes.get(sha, size):
                problems.append(f"blob {sha[:12]}: {bucket}/{key} holds {size} bytes")
        elif status == "quarantined":
            if _head(s3, settings.quarantine_bucket, sha) is None:
                problems.append(f"blob {sha[:12]}: quarantined, but not in the quarantine bucket")
            if _head(s3, bucket, key) is not None:
                problems.append(f"blob {sha[:12]}: quarantined, yet still at {key}")
    return problems


def _head(s3: Any, bucket: str, key: str) -> int | None:
    try:
        return int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def _incoming_clean(settings: Settings, s3: Any, tenant_ids: list[uuid.UUID]) -> list[str]:
    """Every object under the tenants' incoming/ and sealed/ prefixes is the bytes of a ready
    or failed blob (kept for a retry); anything else is an orphan. (Once every upload ended,
    incoming/ holds nothing: landed bytes were sealed, the rest discarded.)"""
    keys: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    for tenant_id in tenant_ids:
        for page in paginator.paginate(Bucket=settings.bucket, Prefix=f"incoming/{tenant_id}/"):
            keys += [item["Key"] for item in page.get("Contents", [])]
    sessions = make_session_factory(make_engine(settings, pool_size=1))
    with sessions() as session:
        # Sealed keys are random: the tenants' are the ones their uploads name.
        theirs = set(
            session.execute(
                select(UploadRow.sealed_key).where(UploadRow.tenant_id.in_(tenant_ids))
            ).scalars()
        )
        for page in paginator.paginate(Bucket=settings.bucket, Prefix="sealed/"):
            keys += [item["Key"] for item in page.get("Contents", []) if item["Key"] in theirs]
        held = dict(
            session.execute(
                select(Blob.object_key, Blob.status).where(Blob.object_key.in_(keys))
            ).all()
        )
    counts = Counter(keys)
    problems = [f"{key} listed {n} times" for key, n in counts.items() if n > 1]
    for key in counts:
        if held.get(key) not in ("ready", "failed"):
            problems.append(f"orphaned object {key} (blob: {held.get(key)})")
    return problems


async def _api_agrees(
    settings: Settings, rows: dict[str, FileRow], known: dict[str, Upload], keys: list[str]
) -> list[str]:
    problems: list[str] = []
    slots = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=settings.api_url, timeout=30) as api:

        async def one(file_id: str, u: Upload) -> None:
            row = rows.get(file_id)
            if row is None:
                return
            headers = {"Authorization": f"Bearer {keys[u.tenant]}"}
            async with slots:
                got = (await api.get(f"/v1/files/{file_id}", headers=headers)).json()
                if got["status"] != row.status:
                    problems.append(
                        f"{file_id}: the API says {got['status']}, Postgres {row.status}"
                    )
                problems.extend(_stages_ok(file_id, u, got))
                if got.get("cdn_url") and u.sample.visibility == "public":
                    served = await api.get(got["cdn_url"])
                    digest = hashlib.sha256(served.content).hexdigest()
                    if served.status_code != 200 or digest != u.sample.sha256:
                        problems.append(f"{file_id}: the edge served {served.status_code}")
                elif u.sample.visibility == "public" and got["status"] == "ready":
                    problems.append(f"{file_id}: public and ready, but no cdn_url")

        await asyncio.gather(*(one(file_id, u) for file_id, u in known.items()))
    return problems


def _stages_ok(file_id: str, u: Upload, got: dict[str, Any]) -> list[str]:
    """Images get thumbnails and OCR, PDFs OCR: a fault may delay a stage, never fail it."""
    if got["status"] != "ready":
        return []
    wanted = {"image": ("thumbnails", "ocr"), "pdf": ("ocr",)}.get(_content_kind(u), ())
    stages = got.get("stages") or {}
    return [
        f"{file_id} ({u.sample.kind}): {name} {stages.get(name)}"
        for name in wanted
        if (stages.get(name) or {}).get("status") != "succeeded"
    ]


def _content_kind(u: Upload) -> str:
    if u.sample.content_type.startswith("image/"):
        return "image"
    return "pdf" if u.sample.content_type == "application/pdf" else u.sample.kind


async def _workflows_closed(
    temporal: TemporalClient, rows: dict[str, FileRow], tenant_ids: list[uuid.UUID], end: EndState
) -> list[str]:
    problems: list[str] = []
    slots = asyncio.Semaphore(8)

    async def one(row: FileRow) -> None:
        async with slots:
            described = await temporal.get_workflow_handle(row.workflow_id).describe()
        if described.status != WorkflowExecutionStatus.COMPLETED:
            problems.append(f"{row.workflow_id}: {described.status and described.status.name}")

    await asyncio.gather(*(one(r) for r in rows.values()))
    async for wf in temporal.list_workflows(_tenants_query(tenant_ids)):
        if wf.id.removeprefix("ingest-") in rows:
            continue
        # The API started the workflow and then failed to commit the row: it terminates
        # the workflow, or (if it died) the workflow expires and completes.
        end.rowless.append(wf.id)
        if wf.status not in (
            WorkflowExecutionStatus.COMPLETED,
            WorkflowExecutionStatus.TERMINATED,
        ):
            problems.append(f"{wf.id} (no file row): {wf.status and wf.status.name}")
    return problems


async def disturbances(temporal: TemporalClient, uploads: list[Upload], end: EndState) -> None:
    """When each file met a fault: spans (from, to) within which the fault that disturbed it
    happened. A client retry is a point (the failed attempt); an activity retry spans from
    its scheduling to its last attempt's start; a timed-out activity or workflow task spans
    its start to the timeout; a reconcile (no store event reached the workflow) is a point
    at the time the bytes were sent."""
    slots = asyncio.Semaphore(8)

    async def one(u: Upload) -> None:
        assert u.file_id is not None
        async with slots:
            history = await temporal.get_workflow_handle(f"ingest-{u.file_id}").fetch_history()
        spans = [(t, t) for t, _ in u.retries]
        at: dict[int, float] = {}
        scheduled: dict[int, str] = {}
        signals = 0
        for event in history.events:
            now = event.event_time.seconds + event.event_time.nanos / 1e9
            at[event.event_id] = now
            kind = event.event_type
            if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                name = event.activity_task_scheduled_event_attributes.activity_type.name
                scheduled[event.event_id] = name
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                started = event.activity_task_started_event_attributes
                name = scheduled.get(started.scheduled_event_id, "")
                if started.attempt > 1 and name not in POLLING_ACTIVITIES:
                    spans.append((at.get(started.scheduled_event_id, now), now))
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
                started_id = event.activity_task_timed_out_event_attributes.started_event_id
                spans.append((at.get(started_id, now), now))
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                started_id = event.workflow_task_timed_out_event_attributes.started_event_id
                spans.append((at.get(started_id, now), now))
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                spans.append((now, now))
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                signals += 1
        if signals == 0 and u.method == "PUT" and u.sent_at is not None:
            spans.append((u.sent_at, u.sent_at))
        if spans:
            end.disturbed[u.file_id] = sorted(spans)

    await asyncio.gather(*(one(u) for u in uploads if u.file_id))


def blamed(span: tuple[float, float], faults_at: list[float]) -> int | None:
    """The fault a disturbance is blamed on: the first one that struck within its span, else
    the last one before it began; None if it began before any fault."""
    lo, hi = span
    within = [i for i, at in enumerate(faults_at) if lo <= at <= hi]
    if within:
        return within[0]
    before = [i for i, at in enumerate(faults_at) if at <= lo]
    return before[-1] if before else None

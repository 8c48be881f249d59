"""`GET /v1/files/{id}/events`: a file's progress as Server-Sent Events.

Each run of a file's workflow keeps its events in Postgres when it commits its outcome; while
a run is live, its `events` query is polled after them. A terminal status is sent only once
it is committed, so a client that reacts to it by fetching the file sees the same status. A
retried file's stream shows its earlier run too (ending `failed`, say), then the retry: the
stream ends after the file's current terminal status.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import TypeAdapter
from sqlalchemy import select
from temporalio.client import WorkflowQueryRejectedError
from temporalio.service import RPCError

from api.deps import AppState, AutocommitSessionDep, StateDep, UploaderDep
from api.errors import AUTHENTICATED, BadRequest, ErrorCode, responses
from api.routes.files import owned_file
from api.schemas import FileEventPublic
from conveyor_core.db.models import File, FileEvent
from conveyor_core.types import EventsPage, EventsQuery, FileStatus, ProgressEvent
from workflows.ingest import IngestWorkflow

router = APIRouter(prefix="/v1/files", tags=["files"], responses=AUTHENTICATED)

POLL_SECONDS = 0.5
RECONNECT_MS = 1000

_EVENTS = TypeAdapter(EventsPage)


# Event ids are Postgres bigints: anything larger (or negative) is no id this stream sent.
MAX_EVENT_ID = 2**63 - 1
_EVENT_ID = re.compile(r"[0-9]{1,19}")


def _event_id(value: str | int | None) -> int | None:
    """A resume point from `?after=` or Last-Event-ID; raises 400 invalid_last_event_id."""
    if value is None:
        return None
    if isinstance(value, int):
        number = value
    elif _EVENT_ID.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        number = -1
    if not 0 <= number <= MAX_EVENT_ID:
        raise BadRequest(
            f"Last-Event-ID and after must be an event id this stream sent: a whole number "
            f"from 0 to {MAX_EVENT_ID}.",
            code=ErrorCode.INVALID_LAST_EVENT_ID,
        )
    return number


async def _watched_file(
    file_id: uuid.UUID,
    state: StateDep,
    session: AutocommitSessionDep,
    tenancy: UploaderDep,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[
        int | None,
        Query(
            description="Resume after this event id (as Last-Event-ID).",
            json_schema_extra={"minimum": 0, "maximum": MAX_EVENT_ID},
        ),
    ] = None,
) -> AsyncIterator[tuple[File, int]]:
    """Checked before the stream starts, so a bad request still gets its 4xx; holds one of
    the tenant's stream slots until the stream ends (429 too_many_streams when none is free)."""
    resume = _event_id(after) or 0
    if last_event_id is not None:
        resume = _event_id(last_event_id) or 0
    file = await owned_file(session, file_id, tenancy)
    # The stream may last minutes: it must not hold a database connection all along (each
    # polling round takes one for its queries and gives it back).
    await session.close()
    with state.stream_slots.hold(tenancy.tenant_id, tenancy.token.id if tenancy.token else None):
        yield file, resume


@router.get(
    "/{file_id}/events",
    response_class=EventSourceResponse,
    responses=responses(
        ErrorCode.FILE_NOT_FOUND,
        ErrorCode.FILE_DELETED,
        ErrorCode.INVALID_LAST_EVENT_ID,
        ErrorCode.RATE_LIMITED,  # the router's 429, which this one's replaces
        ErrorCode.TOO_MANY_STREAMS,
    ),
)
async def file_events(
    state: StateDep, watched: Annotated[tuple[File, int], Depends(_watched_file)]
) -> AsyncIterator[ServerSentEvent]:
    """The file's status and stage transitions as they happen, ending with its terminal
    status. Each event's id is its sequence number: reconnecting with `Last-Event-ID` (or
    `?after=`) resumes with the next one."""
    file, last = watched
    deadline = time.monotonic() + state.settings.events_stream_seconds
    while time.monotonic() < deadline and not state.draining.is_set():
        # Kept events first: those of earlier runs (a retried file) and, once committed, all.
        status, kept = await _kept(state, file.id, after=last)
        for event in kept:
            yield _sse(file.id, event)
            last = event.seq
        if FileStatus(status).is_terminal:
            if last == 0:  # finished before events were kept
                yield _sse(file.id, ProgressEvent(seq=1, kind="status", status=status, at=""))
            return
        for event in await _live_events(state, file.workflow_id, last):
            if event.kind == "status" and FileStatus(event.status).is_terminal:
                break  # sent once Postgres has it (next round)
            yield _sse(file.id, event)
            last = event.seq
        await asyncio.sleep(POLL_SECONDS)
    yield ServerSentEvent(comment="reconnect to go on", retry=RECONNECT_MS)


async def _kept(state: AppState, file_id: uuid.UUID, after: int) -> tuple[str, list[ProgressEvent]]:
    """The file's status now, and the events after `after` kept in Postgres (each run keeps
    its own when it commits its outcome)."""
    async with state.sessions() as session:
        status = (await session.execute(select(File.status).where(File.id == file_id))).scalar()
        rows = (
            await session.execute(
                select(FileEvent)
                .where(FileEvent.file_id == file_id, FileEvent.seq > after)
                .order_by(FileEvent.seq)
            )
        ).scalars()
        return status or FileStatus.DELETED.value, [
            ProgressEvent(
                seq=r.seq,
                kind=r.kind,
                stage=r.stage,
                status=r.status,
                detail=r.detail,
                at=r.at.isoformat(),
            )
            for r in rows
        ]


async def _live_events(state: AppState, workflow_id: str, after: int) -> list[ProgressEvent]:
    handle = state.temporal.get_workflow_handle_for(IngestWorkflow.run, workflow_id)
    try:
        raw = await handle.query(
            IngestWorkflow.events.__name__,
            EventsQuery(after_seq=after),
            rpc_timeout=timedelta(seconds=state.settings.workflow_query_timeout_seconds),
        )
    except (RPCError, WorkflowQueryRejectedError):
        # Not started yet, closing, or its worker too busy: a later round asks again.
        return []
    return _EVENTS.validate_python(raw).events


def _sse(file_id: uuid.UUID, event: ProgressEvent) -> ServerSentEvent:
    return ServerSentEvent(
        id=str(event.seq),
        event=event.kind,
        data=FileEventPublic.model_validate(
            {
                "seq": event.seq,
                "file_id": file_id,
                "type": event.kind,
                "stage": event.stage,
                "status": event.status,
                "detail": event.detail,
                "at": event.at or None,
            }
        ),
    )

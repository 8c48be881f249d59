"""`GET /v1/files/{id}/events`: a file's progress as Server-Sent Events.

While the workflow runs, its `events` query is polled; once Postgres holds the outcome, the
events kept with it are the answer. A terminal status is sent only after it is committed, so
a client that reacts to it by fetching the file sees the same status.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import TypeAdapter
from sqlalchemy import select
from temporalio.client import WorkflowQueryRejectedError
from temporalio.service import RPCError

from api.deps import AppState, SessionDep, StateDep, TenancyDep
from api.errors import BadRequest, Gone, NotFound, responses
from api.routes.files import _owned_file
from api.schemas import FileEventPublic
from conveyor_core.db.models import File, FileEvent
from conveyor_core.types import EventsPage, EventsQuery, FileStatus, ProgressEvent
from workflows.ingest import IngestWorkflow

router = APIRouter(prefix="/v1/files", tags=["files"])

POLL_SECONDS = 0.5
RECONNECT_MS = 1000

_EVENTS = TypeAdapter(EventsPage)


async def _watched_file(
    file_id: uuid.UUID,
    session: SessionDep,
    tenancy: TenancyDep,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[
        int | None, Query(ge=0, description="Resume after this event id (as Last-Event-ID).")
    ] = None,
) -> tuple[File, int]:
    """Checked before the stream starts, so a bad request still gets its 4xx."""
    file = await _owned_file(session, file_id, tenancy.tenant_id)
    resume = after or 0
    if last_event_id is not None:
        try:
            resume = int(last_event_id)
        except ValueError:
            resume = -1
        if resume < 0:
            raise BadRequest(
                "Last-Event-ID must be an event id this stream sent (a whole number).",
                code="invalid_last_event_id",
            )
    # The stream may last minutes: it must not hold a database connection all along.
    await session.close()
    return file, resume


@router.get(
    "/{file_id}/events",
    response_class=EventSourceResponse,
    responses=responses(NotFound, Gone, BadRequest),
)
async def file_events(
    state: StateDep, watched: Annotated[tuple[File, int], Depends(_watched_file)]
) -> AsyncIterator[ServerSentEvent]:
    """The file's status and stage transitions as they happen, ending with its terminal
    status. Each event's id is its sequence number: reconnecting with `Last-Event-ID` (or
    `?after=`) resumes with the next one."""
    file, last = watched
    deadline = time.monotonic() + state.settings.events_stream_seconds
    while time.monotonic() < deadline:
        committed = await _committed(state, file.id)
        if committed is not None:
            status, kept = committed
            for event in kept:
                if event.seq > last:
                    yield _sse(file.id, event)
                    last = event.seq
            if not kept and last == 0:  # finished before events were kept
                yield _sse(file.id, ProgressEvent(seq=1, kind="status", status=status, at=""))
            return
        for event in await _live_events(state, file.workflow_id, last):
            if event.kind == "status" and FileStatus(event.status).is_terminal:
                break  # sent once Postgres has it (next round)
            yield _sse(file.id, event)
            last = event.seq
        await asyncio.sleep(POLL_SECONDS)
    yield ServerSentEvent(comment="reconnect to go on", retry=RECONNECT_MS)


async def _committed(state: AppState, file_id: uuid.UUID) -> tuple[str, list[ProgressEvent]] | None:
    """The file's terminal status and kept events once its outcome is in Postgres."""
    async with state.sessions() as session:
        status = (await session.execute(select(File.status).where(File.id == file_id))).scalar()
        if status is None or not FileStatus(status).is_terminal:
            return None
        rows = (
            await session.execute(
                select(FileEvent).where(FileEvent.file_id == file_id).order_by(FileEvent.seq)
            )
        ).scalars()
        return status, [
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
        raw = await handle.query(IngestWorkflow.events.__name__, EventsQuery(after_seq=after))
    except (RPCError, WorkflowQueryRejectedError):
        return []  # not started yet, or closing: Postgres answers on a later round
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

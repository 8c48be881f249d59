"""Files: a file's metadata and processing status."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import WorkflowQueryRejectedError
from temporalio.service import RPCError

from api.deps import AppState, SessionDep, StateDep, TenancyDep
from api.errors import NotFound, responses
from api.schemas import FilePublic, StagePublic
from conveyor_core.db.models import File
from conveyor_core.types import FileStatus, IngestProgress, Visibility
from workflows.ingest import IngestWorkflow

router = APIRouter(prefix="/v1/files", tags=["files"])


@router.get("/{file_id}", response_model=FilePublic, responses=responses(NotFound))
async def get_file(
    file_id: uuid.UUID, state: StateDep, session: SessionDep, tenancy: TenancyDep
) -> FilePublic:
    file = await session.get(File, file_id)
    if file is None or file.tenant_id != tenancy.tenant_id:
        raise NotFound("No such file.", code="file_not_found")
    return await file_public(state, session, file)


async def file_public(state: AppState, session: AsyncSession, file: File) -> FilePublic:
    """While the workflow runs its query is the truth; afterwards Postgres is."""
    if not FileStatus(file.status).is_terminal:
        progress = await _query_progress(state, file.workflow_id)
        if progress is not None and not progress.status.is_terminal:
            return _public(file, progress.status, progress.detail, _stages(progress))
        await session.refresh(file)
    return _public(
        file,
        FileStatus(file.status),
        file.status_detail,
        {name: StagePublic.model_validate(stage) for name, stage in file.stages.items()},
    )


async def _query_progress(state: AppState, workflow_id: str) -> IngestProgress | None:
    handle = state.temporal.get_workflow_handle_for(IngestWorkflow.run, workflow_id)
    try:
        return await handle.query(IngestWorkflow.status)
    except (RPCError, WorkflowQueryRejectedError):
        # Closed or unreachable workflow: the database row is the answer.
        return None


def _stages(progress: IngestProgress) -> dict[str, StagePublic]:
    return {
        name: StagePublic(status=s.status, detail=s.detail, duration_ms=s.duration_ms)
        for name, s in progress.stages.items()
    }


def _public(
    file: File, status: FileStatus, detail: str | None, stages: dict[str, StagePublic]
) -> FilePublic:
    return FilePublic(
        id=file.id,
        filename=file.filename,
        size=file.size if file.size is not None else file.declared_size,
        content_type=file.content_type or file.declared_content_type,
        sha256=file.sha256,
        visibility=Visibility(file.visibility),
        status=status,
        status_detail=detail,
        stages=stages,
        workflow_id=file.workflow_id,
        created_at=file.created_at,
        ready_at=file.ready_at,
    )

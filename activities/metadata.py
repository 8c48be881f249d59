"""Metadata stage: the file's row and its blob, each change in one idempotent transaction."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from conveyor_core.db.models import Blob, File
from conveyor_core.db.session import transaction
from conveyor_core.types import CommitReadyInput, FileStatus, FinalizeInput, StageState

NON_TERMINAL = (FileStatus.AWAITING_UPLOAD.value, FileStatus.PROCESSING.value)


def stages_json(stages: dict[str, StageState]) -> dict[str, Any]:
    return {name: asdict(state) for name, state in stages.items()}


class MetadataActivities:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @activity.defn(name="commit_ready")
    def commit_ready(self, inp: CommitReadyInput) -> None:
        """Records the blob (sha256 -> where the bytes landed) and makes the file ready."""
        with transaction(self._sessions) as session:
            session.execute(
                insert(Blob)
                .values(
                    sha256=inp.sha256,
                    bucket=inp.bucket,
                    object_key=inp.object_key,
                    size=inp.size,
                    content_type=inp.content_type,
                )
                .on_conflict_do_nothing(index_elements=[Blob.sha256])
            )
            changed = session.execute(
                update(File)
                .where(File.id == uuid.UUID(inp.file_id), File.status.in_(NON_TERMINAL))
                .values(
                    status=FileStatus.READY.value,
                    status_detail=None,
                    sha256=inp.sha256,
                    size=inp.size,
                    content_type=inp.content_type,
                    stages=stages_json(inp.stages),
                    ready_at=func.now(),
                )
                .returning(File.id)
            ).first()
            if changed is None:
                _require_status(session, inp.file_id, FileStatus.READY)

    @activity.defn(name="finalize_file")
    def finalize_file(self, inp: FinalizeInput) -> None:
        """Ends the file in a terminal status other than ready, with the reason."""
        with transaction(self._sessions) as session:
            changed = session.execute(
                update(File)
                .where(File.id == uuid.UUID(inp.file_id), File.status.in_(NON_TERMINAL))
                .values(
                    status=inp.status.value,
                    status_detail=inp.detail,
                    stages=stages_json(inp.stages),
                    updated_at=datetime.now(UTC),
                )
                .returning(File.id)
            ).first()
            if changed is None:
                _require_status(session, inp.file_id, inp.status)


def _require_status(session: Session, file_id: str, wanted: FileStatus) -> None:
    """A retry finding its own earlier commit is fine; anything else is a real conflict."""
    current = session.get(File, uuid.UUID(file_id))
    if current is None:
        raise ApplicationError(f"file {file_id} has no row", type="FileMissing", non_retryable=True)
    if current.status != wanted.value:
        raise ApplicationError(
            f"file {file_id} is already {current.status}, not {wanted.value}",
            type="FileStatusConflict",
            non_retryable=True,
        )

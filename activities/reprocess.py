"""Reprocess: the ready blobs a batch re-runs a stage over, a page at a time.

Pages are keyed by SHA-256 (the blob's primary key): a page starts after the last hash of
the one before, so a page is one index range scan however far the batch has got, and blobs
added or released meanwhile never shift a page. The filter is data, never SQL: each field
becomes one bound condition.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Select, and_, exists, func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from conveyor_core.db.models import Blob, File, Tenant
from conveyor_core.types import (
    BlobRef,
    BlobStatus,
    FileStatus,
    ReprocessBatch,
    ReprocessBatchInput,
    ReprocessFilter,
)

INVALID_FILTER_ERROR = "InvalidReprocessFilter"
MAX_PAGE_SIZE = 1000


def parse_instant(value: str) -> datetime:
    """An ISO 8601 date or date-time; one without an offset is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as e:
        raise ValueError(f"{value!r} is not an ISO 8601 date or date-time") from e
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


def filter_conditions(filter: ReprocessFilter) -> list[ColumnElement[bool]]:
    """The filter as bound conditions on `Blob` (ready blobs only)."""
    conditions: list[ColumnElement[bool]] = [Blob.status == BlobStatus.READY.value]
    if filter.content_type:
        if filter.content_type.endswith("*"):
            prefix = _like_prefix(filter.content_type[:-1])
            conditions.append(Blob.content_type.like(prefix, escape="\\"))
        else:
            conditions.append(Blob.content_type == filter.content_type)
    if filter.tenant:
        conditions.append(
            exists().where(
                File.sha256 == Blob.sha256,
                File.status == FileStatus.READY.value,
                File.tenant_id == Tenant.id,
                Tenant.name == filter.tenant,
            )
        )
    try:
        if filter.created_after:
            conditions.append(Blob.created_at >= parse_instant(filter.created_after))
        if filter.created_before:
            conditions.append(Blob.created_at < parse_instant(filter.created_before))
    except ValueError as e:
        raise ApplicationError(str(e), type=INVALID_FILTER_ERROR, non_retryable=True) from e
    return conditions


def batch_query(inp: ReprocessBatchInput) -> Select[Blob]:
    query = select(Blob).where(and_(*filter_conditions(inp.filter)))
    if inp.after_sha256 is not None:
        query = query.where(Blob.sha256 > inp.after_sha256)
    return query.order_by(Blob.sha256).limit(max(1, min(inp.limit, MAX_PAGE_SIZE)))


class ReprocessActivities:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @activity.defn(name="count_reprocess")
    def count_reprocess(self, filter: ReprocessFilter) -> int:
        """How many ready blobs match now: the batch's expected total, for progress."""
        with self._sessions() as session:
            query = select(func.count()).select_from(Blob).where(*filter_conditions(filter))
            return int(session.execute(query).scalar_one())

    @activity.defn(name="list_reprocess_batch")
    def list_reprocess_batch(self, inp: ReprocessBatchInput) -> ReprocessBatch:
        """The next page: up to `limit` matching ready blobs after `after_sha256`."""
        with self._sessions() as session:
            blobs = session.execute(batch_query(inp)).scalars().all()
            return ReprocessBatch(
                blobs=[
                    BlobRef(
                        bucket=b.bucket,
                        key=b.object_key,
                        sha256=b.sha256,
                        size=b.size,
                        content_type=b.content_type,
                    )
                    for b in blobs
                ]
            )

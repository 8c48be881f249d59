"""Outcome: a file's outcome committed and its webhooks' deliveries enqueued in one
Postgres transaction, run by the ingest workflow as one local activity.

Together, a delivery row exists exactly when the outcome it announces is committed, and a
file costs one transaction and one marker in its history instead of two.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.metadata import record_outcome
from activities.webhooks import enqueue_deliveries, enqueued
from conveyor_core.db.session import transaction
from conveyor_core.settings import Settings
from conveyor_core.types import CommitInput, EnqueueWebhooksResult
from observability.metrics import FILES_FINISHED


class OutcomeActivities:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    @activity.defn(name="commit_outcome")
    def commit_outcome(self, inp: CommitInput) -> EnqueueWebhooksResult:
        """Records the outcome (idempotent) and names the webhook deliveries to start."""
        with transaction(self._sessions) as session:
            finished = record_outcome(session, inp)
            pending = enqueue_deliveries(session, inp.file_id, inp.status)
        if finished:
            FILES_FINISHED.labels(inp.status.value).inc()
        return enqueued(self._settings, pending)

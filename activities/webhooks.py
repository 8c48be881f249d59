"""Outgoing webhooks: enqueue one delivery per subscribed endpoint when a file ends, and
POST each one, signed, recording every attempt on its row.

Deliveries are at least once: an attempt whose answer was lost is sent again, with the
same body and `Conveyor-Delivery` id, so receivers deduplicate by that id.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from conveyor_core.db.models import File, WebhookDelivery, WebhookEndpoint
from conveyor_core.db.session import transaction
from conveyor_core.settings import Settings
from conveyor_core.types import (
    FILE_MISSING_ERROR,
    WEBHOOK_REFUSED_ERROR,
    DeliverWebhookInput,
    DeliverWebhookResult,
    DeliveryStatus,
    EnqueueWebhooksInput,
    EnqueueWebhooksResult,
    FailDeliveryInput,
    FileStatus,
)
from conveyor_core.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    event_for,
    private_host_reason,
    sign,
)

# Retried, not refused: the receiver may come back (or be fixed) before the deadline.
UNREACHABLE_ERROR = "WebhookUnreachable"
REJECTED_ERROR = "WebhookRejected"
BACKOFF_COEFFICIENT = 2.0
MAX_ERROR_LENGTH = 1024
_RESPONSE_SNIPPET = 200  # bytes of a refusing receiver's answer kept in last_error


def utc_timestamp(at: datetime) -> str:
    """ISO 8601 with a `Z`, as the API writes its timestamps."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def webhook_body(
    delivery_id: uuid.UUID, event: str, created_at: datetime, file: File, status: FileStatus
) -> str:
    """The JSON sent for one delivery, fixed when it is enqueued (every retry sends it)."""
    payload: dict[str, Any] = {
        "id": str(delivery_id),
        "type": event,
        "created_at": utc_timestamp(created_at),
        "data": {
            "file_id": str(file.id),
            "filename": file.filename,
            "status": status.value,
            "status_detail": file.status_detail,
            "size": file.size if file.size is not None else file.declared_size,
            "content_type": file.content_type or file.declared_content_type,
            "sha256": file.sha256,
            "visibility": file.visibility,
        },
    }
    return json.dumps(payload, separators=(",", ":"))


class WebhookActivities:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    @activity.defn(name="enqueue_webhooks")
    def enqueue_webhooks(self, inp: EnqueueWebhooksInput) -> EnqueueWebhooksResult:
        """Inserts one pending delivery per endpoint of the file's tenant subscribed to its
        event (a retry finds the rows it made) and names the pending ones to start."""
        event = event_for(inp.status)
        if event is None:
            return self._enqueued([])
        file_id = uuid.UUID(inp.file_id)
        with transaction(self._sessions) as session:
            file = session.get(File, file_id)
            if file is None:
                raise ApplicationError(
                    f"file {inp.file_id} has no row", type=FILE_MISSING_ERROR, non_retryable=True
                )
            endpoints = (
                session.execute(
                    select(WebhookEndpoint.id).where(
                        WebhookEndpoint.tenant_id == file.tenant_id,
                        WebhookEndpoint.deleted_at.is_(None),
                        WebhookEndpoint.disabled_at.is_(None),
                        WebhookEndpoint.events.contains([event]),
                    )
                )
                .scalars()
                .all()
            )
            if not endpoints:
                return self._enqueued([])
            created_at = datetime.now(UTC)
            rows = []
            for endpoint_id in endpoints:
                delivery_id = uuid.uuid4()
                rows.append(
                    {
                        "id": delivery_id,
                        "endpoint_id": endpoint_id,
                        "file_id": file_id,
                        "event": event,
                        "body": webhook_body(delivery_id, event, created_at, file, inp.status),
                        "status": DeliveryStatus.PENDING.value,
                        "created_at": created_at,
                    }
                )
            session.execute(
                insert(WebhookDelivery)
                .values(rows)
                .on_conflict_do_nothing(index_elements=["endpoint_id", "file_id", "event"])
            )
            pending = (
                session.execute(
                    select(WebhookDelivery.id)
                    .where(
                        WebhookDelivery.file_id == file_id,
                        WebhookDelivery.event == event,
                        WebhookDelivery.endpoint_id.in_(endpoints),
                        WebhookDelivery.status == DeliveryStatus.PENDING.value,
                    )
                    .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
                )
                .scalars()
                .all()
            )
        return self._enqueued([str(d) for d in pending])

    def _enqueued(self, delivery_ids: list[str]) -> EnqueueWebhooksResult:
        s = self._settings
        return EnqueueWebhooksResult(
            delivery_ids=delivery_ids,
            task_queue=s.webhooks_task_queue,
            retry_initial_seconds=s.webhook_retry_initial_seconds,
            retry_max_interval_seconds=s.webhook_retry_max_interval_seconds,
            deadline_seconds=s.webhook_delivery_deadline_hours * 3600,
        )

    @activity.defn(name="deliver_webhook")
    def deliver_webhook(self, inp: DeliverWebhookInput) -> DeliverWebhookResult:
        """One signed POST of the delivery's body. A 2xx marks it delivered; anything else
        (connection errors, timeouts, 3xx, 4xx, 5xx) is recorded on the row and raised, so
        Temporal retries it with backoff. Only a refusal (endpoint deleted or disabled,
        private address) stops it at once, marked failed."""
        attempt = activity.info().attempt
        delivery_id = uuid.UUID(inp.delivery_id)
        with transaction(self._sessions) as session:
            found = session.execute(
                select(WebhookDelivery, WebhookEndpoint)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .where(WebhookDelivery.id == delivery_id)
            ).first()
        if found is None:
            raise ApplicationError(
                f"delivery {inp.delivery_id} has no row",
                type=WEBHOOK_REFUSED_ERROR,
                non_retryable=True,
            )
        delivery, endpoint = found
        if delivery.status != DeliveryStatus.PENDING.value:
            # A retry after the outcome was recorded: nothing to send again.
            return DeliverWebhookResult(
                status=DeliveryStatus(delivery.status),
                attempts=delivery.attempts,
                status_code=delivery.last_status_code,
                detail=delivery.last_error,
            )
        if endpoint.deleted_at is not None or endpoint.disabled_at is not None:
            self._refuse(delivery_id, attempt, "the endpoint was deleted")
        if not self._settings.webhook_allow_private_urls:
            reason = private_host_reason(endpoint.url)
            if reason is not None:
                self._refuse(delivery_id, attempt, f"refused: {reason}")

        body = delivery.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Conveyor-Webhooks/1",
            EVENT_HEADER: delivery.event,
            DELIVERY_HEADER: str(delivery.id),
            SIGNATURE_HEADER: sign(endpoint.secret, body, int(time.time())),
        }
        try:
            # No redirects: a 3xx must not send the body (or us) somewhere else.
            with (
                httpx.Client(timeout=self._settings.webhook_timeout_seconds) as client,
                client.stream("POST", endpoint.url, content=body, headers=headers) as response,
            ):
                status_code = response.status_code
                snippet = _first_bytes(response, _RESPONSE_SNIPPET)
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}".rstrip(": ")
            self._record_failure(delivery_id, attempt, None, error, inp)
            raise ApplicationError(f"POST failed: {error}", type=UNREACHABLE_ERROR) from e

        if 200 <= status_code < 300:
            self._update_pending(
                delivery_id,
                status=DeliveryStatus.DELIVERED.value,
                attempts=func.greatest(WebhookDelivery.attempts, attempt),
                last_status_code=status_code,
                last_error=None,
                last_attempt_at=func.now(),
                next_attempt_at=None,
                delivered_at=func.now(),
            )
            return DeliverWebhookResult(
                status=DeliveryStatus.DELIVERED, attempts=attempt, status_code=status_code
            )
        error = f"HTTP {status_code}" + (f": {snippet}" if snippet else "")
        self._record_failure(delivery_id, attempt, status_code, error, inp)
        raise ApplicationError(f"the receiver answered {error}", type=REJECTED_ERROR)

    @activity.defn(name="fail_webhook_delivery")
    def fail_webhook_delivery(self, inp: FailDeliveryInput) -> None:
        """Gives a still-pending delivery up, keeping its last error before the reason."""
        self._update_pending(
            uuid.UUID(inp.delivery_id),
            status=DeliveryStatus.FAILED.value,
            last_error=func.left(
                func.coalesce(WebhookDelivery.last_error + "; ", "") + inp.reason,
                MAX_ERROR_LENGTH,
            ),
            next_attempt_at=None,
        )

    def _update_pending(self, delivery_id: uuid.UUID, **values: Any) -> None:
        """Updates a delivery that is still pending (a finished one is never touched)."""
        with transaction(self._sessions) as session:
            session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery_id,
                    WebhookDelivery.status == DeliveryStatus.PENDING.value,
                )
                .values(**values)
            )

    def _record_failure(
        self,
        delivery_id: uuid.UUID,
        attempt: int,
        status_code: int | None,
        error: str,
        inp: DeliverWebhookInput,
    ) -> None:
        self._update_pending(
            delivery_id,
            attempts=func.greatest(WebhookDelivery.attempts, attempt),
            last_status_code=status_code,
            last_error=error[:MAX_ERROR_LENGTH],
            last_attempt_at=func.now(),
            next_attempt_at=_next_attempt_at(attempt, inp),
        )

    def _refuse(self, delivery_id: uuid.UUID, attempt: int, reason: str) -> NoReturn:
        """Marks the delivery failed and stops its retries."""
        self._update_pending(
            delivery_id,
            status=DeliveryStatus.FAILED.value,
            attempts=func.greatest(WebhookDelivery.attempts, attempt),
            last_error=reason[:MAX_ERROR_LENGTH],
            last_attempt_at=func.now(),
            next_attempt_at=None,
        )
        raise ApplicationError(reason, type=WEBHOOK_REFUSED_ERROR, non_retryable=True)


def _first_bytes(response: httpx.Response, limit: int) -> str:
    """The start of the answer, for last_error, without reading a huge body."""
    data = b""
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= limit:
            break
    return data[:limit].decode("utf-8", "replace").strip()


def _next_attempt_at(attempt: int, inp: DeliverWebhookInput) -> datetime | None:
    """When Temporal's retry policy will try again (None once past the deadline)."""
    delay = min(
        inp.retry_initial_seconds * BACKOFF_COEFFICIENT ** (attempt - 1),
        inp.retry_max_interval_seconds,
    )
    at = datetime.now(UTC) + timedelta(seconds=delay)
    info = activity.info()
    if info.schedule_to_close_timeout and at > info.scheduled_time + info.schedule_to_close_timeout:
        return None
    return at

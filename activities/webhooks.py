"""Outgoing webhooks: enqueue one delivery per subscribed endpoint when a file ends, and
POST each one, signed, recording every attempt on its row.

Deliveries are at least once: an attempt whose answer was lost is sent again, with the
same body and `Conveyor-Delivery` id, so receivers deduplicate by that id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, NoReturn

import httpx
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from conveyor_core.db.models import File, WebhookDelivery, WebhookEndpoint, WebhookInFlight
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
    HostRefused,
    HostUnresolved,
    Resolver,
    event_for,
    resolve_host,
    sign,
    system_resolver,
    url_origin,
)

log = logging.getLogger(__name__)

# Retried, not refused: the receiver may come back (or be fixed) before the deadline.
UNREACHABLE_ERROR = "WebhookUnreachable"
REJECTED_ERROR = "WebhookRejected"
# The tenant already has its share of attempts in flight: tried again shortly, not counted.
BUSY_ERROR = "WebhookTenantBusy"
BACKOFF_COEFFICIENT = 2.0
MAX_ERROR_LENGTH = 1024
BODY_CAP = 4096  # bytes of a non-2xx answer read at most (a 2xx body is not read at all)
_RESPONSE_SNIPPET = 300  # characters of a refusing receiver's answer kept in last_error
HEARTBEAT_SECONDS = 2.0
# An in-flight lease outlives its attempt by this much (the attempt's own writes to Postgres);
# only a worker that died leaves one to lapse.
SLOT_LEASE_MARGIN_SECONDS = 30.0
# pg_advisory_xact_lock(class, key): the class keeps these locks apart from any other use.
_SLOT_LOCK_CLASS = 0x77680001
# DNS lookups run here, so the attempt's deadline bounds them too. A lookup past it is
# abandoned (its thread ends when the system resolver gives up); it holds no socket of ours.
_DNS_LOOKUPS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="webhook-dns")


@dataclass(frozen=True)
class _Answer:
    status_code: int
    snippet: str = ""


class _AttemptFailed(Exception):
    """No HTTP answer: the message is fit for last_error (it never holds the URL)."""


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


def enqueue_deliveries(session: Session, file_id: str, status: FileStatus) -> list[str]:
    """Inserts one pending delivery per endpoint of the file's tenant subscribed to the
    event of `status` (a retry finds the rows it made); returns the pending ones' ids."""
    event = event_for(status)
    if event is None:
        return []
    file = session.get(File, uuid.UUID(file_id))  # its tenant; the row is re-read below
    if file is None:
        raise ApplicationError(
            f"file {file_id} has no row", type=FILE_MISSING_ERROR, non_retryable=True
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
        return []
    # The body tells the file as this transaction left it (commit_outcome updated it).
    session.refresh(file)
    created_at = datetime.now(UTC)
    rows = []
    for endpoint_id in endpoints:
        delivery_id = uuid.uuid4()
        rows.append(
            {
                "id": delivery_id,
                "endpoint_id": endpoint_id,
                "file_id": file.id,
                "event": event,
                "body": webhook_body(delivery_id, event, created_at, file, status),
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
                WebhookDelivery.file_id == file.id,
                WebhookDelivery.event == event,
                WebhookDelivery.endpoint_id.in_(endpoints),
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
            )
            .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
        )
        .scalars()
        .all()
    )
    return [str(d) for d in pending]


def enqueued(settings: Settings, delivery_ids: list[str]) -> EnqueueWebhooksResult:
    """The deliveries to start, with the retry policy from the worker's settings."""
    return EnqueueWebhooksResult(
        delivery_ids=delivery_ids,
        task_queue=settings.webhooks_task_queue,
        retry_initial_seconds=settings.webhook_retry_initial_seconds,
        retry_max_interval_seconds=settings.webhook_retry_max_interval_seconds,
        deadline_seconds=settings.webhook_delivery_deadline_hours * 3600,
    )


class WebhookActivities:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        resolver: Resolver = system_resolver,
    ) -> None:
        """`resolver` answers which addresses a host has (the system's DNS; tests inject
        their own): each attempt asks it once and connects to the address it checked."""
        self._sessions = sessions
        self._settings = settings
        self._resolver = resolver

    @activity.defn(name="enqueue_webhooks")
    def enqueue_webhooks(self, inp: EnqueueWebhooksInput) -> EnqueueWebhooksResult:
        """Inserts one pending delivery per endpoint of the file's tenant subscribed to its
        event (a retry finds the rows it made) and names the pending ones to start."""
        with transaction(self._sessions) as session:
            pending = enqueue_deliveries(session, inp.file_id, inp.status)
        return enqueued(self._settings, pending)

    @activity.defn(name="deliver_webhook")
    def deliver_webhook(self, inp: DeliverWebhookInput) -> DeliverWebhookResult:
        """One signed POST of the delivery's body. A 2xx marks it delivered; anything else
        (connection errors, the attempt's deadline, 3xx, 4xx, 5xx) is recorded on the row
        and raised, so Temporal retries it with backoff. Only a refusal (endpoint deleted or
        disabled, private address) stops it at once, marked failed. A tenant already at its
        share of attempts in flight is retried shortly without an attempt being counted."""
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
            self._refuse(delivery_id, "the endpoint was deleted")
        origin = url_origin(endpoint.url)  # never the whole URL: it may hold a token

        activity.heartbeat()
        if not self._claim_slot(endpoint.tenant_id, delivery_id):
            self._wait_for_slot(delivery_id, origin)
        body = delivery.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Conveyor-Webhooks/1",
            EVENT_HEADER: delivery.event,
            DELIVERY_HEADER: str(delivery.id),
            SIGNATURE_HEADER: sign(endpoint.secret, body, int(time.time())),
        }
        try:
            answer = asyncio.run(self._attempt(endpoint.url, body, headers))
        except HostRefused as e:
            log.warning("webhook delivery %s to %s refused: %s", delivery_id, origin, e)
            self._refuse(delivery_id, f"refused: {e}")
        except _AttemptFailed as e:
            error = str(e)
            log.info("webhook delivery %s to %s failed: %s", delivery_id, origin, error)
            delay = self._record_failure(delivery_id, None, error, inp)
            raise ApplicationError(
                f"POST failed: {error}", type=UNREACHABLE_ERROR, next_retry_delay=delay
            ) from e
        finally:
            self._release_slot(delivery_id)

        if 200 <= answer.status_code < 300:
            attempts = self._update_pending(
                delivery_id,
                status=DeliveryStatus.DELIVERED.value,
                attempts=WebhookDelivery.attempts + 1,
                last_status_code=answer.status_code,
                last_error=None,
                last_attempt_at=func.now(),
                next_attempt_at=None,
                delivered_at=func.now(),
            )
            log.info("webhook delivery %s to %s: HTTP %s", delivery_id, origin, answer.status_code)
            return DeliverWebhookResult(
                status=DeliveryStatus.DELIVERED,
                attempts=attempts or attempt,
                status_code=answer.status_code,
            )
        error = f"HTTP {answer.status_code}" + (f": {answer.snippet}" if answer.snippet else "")
        log.info("webhook delivery %s to %s: HTTP %s", delivery_id, origin, answer.status_code)
        delay = self._record_failure(delivery_id, answer.status_code, error, inp)
        raise ApplicationError(
            f"the receiver answered {error}", type=REJECTED_ERROR, next_retry_delay=delay
        )

    async def _attempt(self, url: str, body: bytes, headers: dict[str, str]) -> _Answer:
        """The POST, all of it (DNS included) within `webhook_timeout_seconds` of wall
        clock, heartbeating meanwhile. Past the deadline the request is cancelled, which
        closes its connection: a receiver dripping bytes holds nothing of ours.

        Raises:
            HostRefused: the host has a private address (and those are refused).
            _AttemptFailed: no answer (no address, no connection, the deadline passed).
        """
        timeout = self._settings.webhook_timeout_seconds
        beating = asyncio.create_task(_heartbeat_every(HEARTBEAT_SECONDS))
        try:
            return await self._post(url, body, headers, timeout)
        except TimeoutError as e:
            raise _AttemptFailed(
                f"Timeout: no answer within the {timeout:g} s an attempt has "
                "(DNS, connect, request, status and headers); the connection was closed"
            ) from e
        except HostUnresolved as e:
            raise _AttemptFailed(f"ConnectError: {e}") from e
        except httpx.HTTPError as e:
            # httpx names the request in a few messages: keep the URL's path and query out.
            message = str(e).replace(url, url_origin(url))
            raise _AttemptFailed(f"{type(e).__name__}: {message}".rstrip(": ")) from e
        finally:
            beating.cancel()

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> _Answer:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        target = httpx.URL(url)
        host = target.raw_host.decode("ascii")
        port = target.port or (443 if target.scheme == "https" else 80)
        # The name is resolved once, checked, and the connection goes to that very address
        # (a second lookup could answer otherwise: DNS rebinding). The receiver still sees
        # its own name: in the Host header, and for TLS in SNI and the certificate check.
        request_headers = {
            **headers,
            "Host": target.netloc.decode("ascii"),
            "Accept-Encoding": "identity",  # a snippet of an error body, not a gzip bomb
        }
        extensions = {"sni_hostname": host} if target.scheme == "https" else {}
        # trust_env=False: no HTTP(S)_PROXY, ALL_PROXY or .netrc from the worker's environment
        # (a proxy would connect to a name we did not check, and add credentials).
        async with httpx.AsyncClient(
            trust_env=False, follow_redirects=False, timeout=timeout
        ) as client:
            async with asyncio.timeout_at(deadline):
                address = await loop.run_in_executor(
                    _DNS_LOOKUPS,
                    partial(
                        resolve_host,
                        host,
                        port,
                        allow_private=self._settings.webhook_allow_private_urls,
                        resolver=self._resolver,
                    ),
                )
                request = client.build_request(
                    "POST",
                    target.copy_with(host=address),
                    content=body,
                    headers=request_headers,
                    extensions=extensions,
                )
                # No redirects: a 3xx must not send the body (or us) somewhere else.
                response = await client.send(request, stream=True)
            try:
                if response.is_success:
                    return _Answer(response.status_code)  # its body is not read at all
                # An error body helps whoever reads last_error: at most BODY_CAP of it,
                # and only while the deadline lasts (the status is the answer either way).
                data = bytearray()
                with contextlib.suppress(TimeoutError, httpx.HTTPError):
                    async with asyncio.timeout_at(deadline):
                        async for chunk in response.aiter_raw():
                            data += chunk
                            if len(data) >= BODY_CAP:
                                break
                snippet = bytes(data[:BODY_CAP]).decode("utf-8", "replace").strip()
                return _Answer(response.status_code, snippet[:_RESPONSE_SNIPPET])
            finally:
                # Unread bytes left: httpcore closes the connection rather than reuse it.
                await response.aclose()

    # Why leases in a table: a tenant's share must hold across every worker process, and the
    # slot must not depend on a connection staying open through the POST (advisory locks
    # would hold one pooled connection per attempt, and mean nothing behind a PgBouncer in
    # transaction mode). A row per attempt in flight, counted under a per-tenant transaction
    # lock, is exact, holds nothing during the POST, and a worker that dies leaves a row that
    # lapses at its lease (the attempt deadline plus a margin) instead of a slot lost forever.
    def _claim_slot(self, tenant_id: uuid.UUID, delivery_id: uuid.UUID) -> bool:
        """Takes one of the tenant's in-flight slots for this attempt, if one is free."""
        lease = timedelta(
            seconds=self._settings.webhook_timeout_seconds + SLOT_LEASE_MARGIN_SECONDS
        )
        with transaction(self._sessions) as session:
            # Claims of one tenant take turns, so two workers cannot both see the last slot.
            session.execute(
                text("SELECT pg_advisory_xact_lock(:cls, hashtext(:tenant))"),
                {"cls": _SLOT_LOCK_CLASS, "tenant": str(tenant_id)},
            )
            session.execute(
                delete(WebhookInFlight).where(
                    WebhookInFlight.tenant_id == tenant_id,
                    WebhookInFlight.expires_at < func.now(),
                )
            )
            busy = session.scalar(
                select(func.count())
                .select_from(WebhookInFlight)
                .where(
                    WebhookInFlight.tenant_id == tenant_id,
                    WebhookInFlight.delivery_id != delivery_id,  # its own lapsed attempt
                )
            )
            if (busy or 0) >= self._settings.webhook_max_in_flight_per_tenant:
                return False
            session.execute(
                insert(WebhookInFlight)
                .values(delivery_id=delivery_id, tenant_id=tenant_id, expires_at=func.now() + lease)
                .on_conflict_do_update(
                    index_elements=[WebhookInFlight.delivery_id],
                    set_={"expires_at": func.now() + lease},
                )
            )
        return True

    def _release_slot(self, delivery_id: uuid.UUID) -> None:
        with transaction(self._sessions) as session:
            session.execute(
                delete(WebhookInFlight).where(WebhookInFlight.delivery_id == delivery_id)
            )

    def _wait_for_slot(self, delivery_id: uuid.UUID, origin: str) -> NoReturn:
        """Gives the activity slot back until one of the tenant's frees up: retried after a
        short random delay (not the backoff), and not counted as an attempt."""
        s = self._settings
        delay = random.uniform(
            s.webhook_retry_initial_seconds,
            s.webhook_retry_initial_seconds + s.webhook_timeout_seconds,
        )
        self._update_pending(
            delivery_id, next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay)
        )
        log.info("webhook delivery %s to %s waits for a slot of its tenant", delivery_id, origin)
        raise ApplicationError(
            f"the tenant has {s.webhook_max_in_flight_per_tenant} deliveries in flight already",
            type=BUSY_ERROR,
            next_retry_delay=timedelta(seconds=delay),
            category=ApplicationErrorCategory.BENIGN,
        )

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

    def _update_pending(self, delivery_id: uuid.UUID, **values: Any) -> int | None:
        """Updates a delivery that is still pending (a finished one is never touched);
        returns its attempts, or None when it was not pending."""
        with transaction(self._sessions) as session:
            return session.scalar(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery_id,
                    WebhookDelivery.status == DeliveryStatus.PENDING.value,
                )
                .values(**values)
                .returning(WebhookDelivery.attempts)
            )

    def _record_failure(
        self,
        delivery_id: uuid.UUID,
        status_code: int | None,
        error: str,
        inp: DeliverWebhookInput,
    ) -> timedelta:
        """Counts the attempt and says when the next one comes: the backoff follows the
        attempts made, not Temporal's attempt number (which waiting for a slot raises too)."""
        pending = (
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == DeliveryStatus.PENDING.value,
        )
        info = activity.info()
        with transaction(self._sessions) as session:
            attempts = session.scalar(
                update(WebhookDelivery)
                .where(*pending)
                .values(
                    attempts=WebhookDelivery.attempts + 1,
                    last_status_code=status_code,
                    last_error=error[:MAX_ERROR_LENGTH],
                    last_attempt_at=func.now(),
                )
                .returning(WebhookDelivery.attempts)
            )
            delay = retry_delay(attempts or 1, inp)
            at: datetime | None = datetime.now(UTC) + delay
            deadline = info.schedule_to_close_timeout
            if deadline and at is not None and at > info.scheduled_time + deadline:
                at = None  # Temporal will not try again
            session.execute(update(WebhookDelivery).where(*pending).values(next_attempt_at=at))
        return delay

    def _refuse(self, delivery_id: uuid.UUID, reason: str) -> NoReturn:
        """Marks the delivery failed and stops its retries (nothing was sent: no attempt)."""
        self._update_pending(
            delivery_id,
            status=DeliveryStatus.FAILED.value,
            last_error=reason[:MAX_ERROR_LENGTH],
            last_attempt_at=func.now(),
            next_attempt_at=None,
        )
        raise ApplicationError(reason, type=WEBHOOK_REFUSED_ERROR, non_retryable=True)


def retry_delay(attempts: int, inp: DeliverWebhookInput) -> timedelta:
    """The wait after the `attempts`-th failed attempt: exponential, capped."""
    seconds = min(
        inp.retry_initial_seconds * BACKOFF_COEFFICIENT ** (attempts - 1),
        inp.retry_max_interval_seconds,
    )
    return timedelta(seconds=seconds)


async def _heartbeat_every(seconds: float) -> None:
    """Tells Temporal the attempt is alive (the SDK throttles what it sends)."""
    while True:
        activity.heartbeat()
        await asyncio.sleep(seconds)

"""Webhooks: a tenant's endpoints, and each delivery to them."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from sqlalchemy import select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import SessionDep, StateDep, TenancyDep
from api.errors import AUTHENTICATED, BadRequest, ErrorCode, NotFound, responses
from api.routes.files import decode_cursor
from api.webhook_schemas import (
    DeliveryList,
    DeliveryPublic,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookPublic,
)
from conveyor_core.db.models import WebhookDelivery, WebhookEndpoint
from conveyor_core.types import DeliveryStatus
from conveyor_core.webhooks import new_secret, private_host_reason, validate_events, validate_url


class InvalidUrl(BadRequest):
    code = ErrorCode.INVALID_URL


class InvalidEvents(BadRequest):
    code = ErrorCode.INVALID_EVENTS


class WebhookNotFound(NotFound):
    code = ErrorCode.WEBHOOK_NOT_FOUND


router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=AUTHENTICATED)
MAX_PAGE = 100


def _sentence(reason: str) -> str:
    return f"{reason[:1].upper()}{reason[1:]}."


async def _owned_endpoint(
    session: AsyncSession, webhook_id: uuid.UUID, tenant_id: uuid.UUID
) -> WebhookEndpoint:
    endpoint = await session.get(WebhookEndpoint, webhook_id)
    if endpoint is None or endpoint.tenant_id != tenant_id or endpoint.deleted_at is not None:
        raise WebhookNotFound("No such webhook.")
    return endpoint


def _public(endpoint: WebhookEndpoint) -> WebhookPublic:
    return WebhookPublic(
        id=endpoint.id, url=endpoint.url, events=endpoint.events, created_at=endpoint.created_at
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    responses=responses(ErrorCode.INVALID_URL, ErrorCode.INVALID_EVENTS),
)
async def create_webhook(
    body: WebhookCreate, state: StateDep, session: SessionDep, tenancy: TenancyDep
) -> WebhookCreated:
    """Registers an endpoint. Its `secret` (shown only in this answer) signs every delivery:
    `Conveyor-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`."""
    try:
        url = validate_url(body.url)
    except ValueError as e:
        raise InvalidUrl(f"The url {e}.") from e
    try:
        events = validate_events(body.events)
    except ValueError as e:
        raise InvalidEvents(_sentence(str(e))) from e
    if not state.settings.webhook_allow_private_urls:
        refused = await asyncio.to_thread(private_host_reason, url)
        if refused is not None:
            raise InvalidUrl(f"The url is refused: {refused}.")
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        tenant_id=tenancy.tenant_id,
        url=url,
        events=events,
        secret=new_secret(),
        created_at=datetime.now(UTC),
    )
    session.add(endpoint)
    await session.commit()
    return WebhookCreated(**_public(endpoint).model_dump(), secret=endpoint.secret)


@router.get("", response_model=WebhookList)
async def list_webhooks(session: SessionDep, tenancy: TenancyDep) -> WebhookList:
    """The tenant's endpoints, newest first (without their secrets)."""
    rows = await session.execute(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == tenancy.tenant_id, WebhookEndpoint.deleted_at.is_(None))
        .order_by(WebhookEndpoint.created_at.desc(), WebhookEndpoint.id.desc())
    )
    return WebhookList(webhooks=[_public(e) for e in rows.scalars()])


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(ErrorCode.WEBHOOK_NOT_FOUND),
)
async def delete_webhook(
    webhook_id: uuid.UUID, session: SessionDep, tenancy: TenancyDep
) -> Response:
    """Deletes the endpoint: nothing more is sent to it, and its pending deliveries fail."""
    endpoint = await _owned_endpoint(session, webhook_id, tenancy.tenant_id)
    endpoint.deleted_at = datetime.now(UTC)
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint.id,
            WebhookDelivery.status == DeliveryStatus.PENDING.value,
        )
        .values(
            status=DeliveryStatus.FAILED.value,
            last_error="the endpoint was deleted",
            next_attempt_at=None,
        )
    )
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=DeliveryList,
    responses=responses(ErrorCode.WEBHOOK_NOT_FOUND, ErrorCode.INVALID_CURSOR),
)
async def list_deliveries(
    webhook_id: uuid.UUID,
    session: SessionDep,
    tenancy: TenancyDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DeliveryList:
    """The endpoint's deliveries, newest first: status, attempts and the last answer."""
    endpoint = await _owned_endpoint(session, webhook_id, tenancy.tenant_id)
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
    if cursor:
        created_at, last_id = decode_cursor(cursor)
        query = query.where(
            tuple_(WebhookDelivery.created_at, WebhookDelivery.id) < tuple_(created_at, last_id)
        )
    rows = (
        (
            await session.execute(
                query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(
                    limit + 1
                )
            )
        )
        .scalars()
        .all()
    )
    page = list(rows[:limit])
    return DeliveryList(
        deliveries=[
            DeliveryPublic(
                id=d.id,
                event=d.event,
                file_id=d.file_id,
                status=DeliveryStatus(d.status),
                attempts=d.attempts,
                last_status_code=d.last_status_code,
                last_error=d.last_error,
                created_at=d.created_at,
                last_attempt_at=d.last_attempt_at,
                next_attempt_at=d.next_attempt_at,
                delivered_at=d.delivered_at,
            )
            for d in page
        ],
        next_cursor=_cursor(page[-1]) if len(rows) > limit else None,
    )


def _cursor(delivery: WebhookDelivery) -> str:
    raw = json.dumps([delivery.created_at.isoformat(), str(delivery.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")

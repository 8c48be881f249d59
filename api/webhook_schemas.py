"""Request and response bodies of the webhook routes (`/v1/webhooks`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from conveyor_core.types import DeliveryStatus


class WebhookCreate(BaseModel):
    """`url`: where to POST (http or https). `events`: which to send, all when left out:
    file.ready, file.failed, file.quarantined, file.expired, file.cancelled."""

    model_config = ConfigDict(extra="forbid")

    # Checked by the route, which answers 400 invalid_url / invalid_events with the reason.
    url: Annotated[str, Field(max_length=10_000)]
    events: Annotated[list[Annotated[str, Field(max_length=64)]] | None, Field(max_length=20)] = (
        None
    )


class WebhookPublic(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    created_at: datetime


class WebhookCreated(WebhookPublic):
    """The endpoint, with the secret its deliveries are signed with: shown only here."""

    secret: str


class WebhookList(BaseModel):
    webhooks: list[WebhookPublic]


class DeliveryPublic(BaseModel):
    id: uuid.UUID  # also the body's `id` and the `Conveyor-Delivery` header
    event: str
    file_id: uuid.UUID
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class DeliveryList(BaseModel):
    deliveries: list[DeliveryPublic]
    next_cursor: str | None

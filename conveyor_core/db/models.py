"""Database models: metadata only. No column ever holds file bytes (DESIGN.md §5)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSONB, datetime: DateTime(timezone=True)}


class Tenant(Base):
    __tablename__ = "tenant"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # Limits of this tenant; None takes the settings' default (CONVEYOR_TENANT_MAX_*).
    max_bytes: Mapped[int | None] = mapped_column(BigInteger)
    max_files: Mapped[int | None] = mapped_column(Integer)
    rate_limit: Mapped[str | None] = mapped_column(String(64))  # per key, e.g. "100/second"
    scan_oversize: Mapped[str | None] = mapped_column(String(32))  # reject | serve_unscanned
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ApiKey(Base):
    __tablename__ = "api_key"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"), index=True)
    # SHA-256 of the key: the key is 256 random bits, so a fast hash is enough and a
    # lookup by hash never compares secrets byte by byte.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]


class UploadToken(Base):
    """A short-lived credential an app's backend mints (with its API key) for a browser: it
    may create uploads within its limits and read the files it created, nothing else."""

    __tablename__ = "upload_token"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime]
    max_file_size: Mapped[int | None] = mapped_column(BigInteger)
    max_files: Mapped[int | None] = mapped_column(Integer)
    # Content types it may declare ("image/png", or "image/*"); null: any.
    content_types: Mapped[list[str] | None] = mapped_column(JSONB)
    # Whether its uploads may be public (served by the edge to anyone): off unless asked.
    allow_public: Mapped[bool] = mapped_column(Boolean, server_default=false())
    files_created: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]


class Blob(Base):
    """Content addressing: sha256 -> the object key where the bytes landed (never copied)."""

    __tablename__ = "blob"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    bucket: Mapped[str] = mapped_column(String(63))
    # A sealed key (`sealed/<random>`, `sealed/<tenant>/<upload>` before random ones): no
    # pre-signed URL can name it.
    object_key: Mapped[str] = mapped_column(String(1024), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(255))
    # processing | ready | quarantined | failed | releasing | released: the stages run once
    # per blob, and files holding the same bytes share their outcome.
    status: Mapped[str] = mapped_column(String(32), server_default="ready", index=True)
    # The ETag of the object verify hashed: copies are made only of that object.
    etag: Mapped[str | None] = mapped_column(String(128))
    # When its release began (status releasing); a release left unfinished is taken up again.
    releasing_at: Mapped[datetime | None]
    # The workflow processing the blob's stages; duplicates wait for it.
    owner_file_id: Mapped[uuid.UUID | None]
    stages: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    thumbnails: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    # What the stages found out about the bytes (dimensions, pages, duration, ...).
    properties: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    public_key: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


BLOB_TEXT_VECTOR = "to_tsvector('english', regexp_replace(text, '[/._]+', ' ', 'g'))"


class BlobText(Base):
    """A blob's text, one row per stage that wrote some (OCR, a document's own text): text
    is per content, not per file."""

    __tablename__ = "blob_text"

    sha256: Mapped[str] = mapped_column(
        ForeignKey("blob.sha256", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[str] = mapped_column(String(64), primary_key=True, server_default="ocr")
    text: Mapped[str] = mapped_column(Text)
    pages: Mapped[int] = mapped_column(Integer)
    languages: Mapped[str] = mapped_column(String(64))
    # Names in the text (report.pdf, contracts/q3.xlsx: archive listings, attachments) are
    # searched by their words, as file names are.
    search_vector: Mapped[str] = mapped_column(TSVECTOR, Computed(BLOB_TEXT_VECTOR, persisted=True))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (Index("ix_blob_text_search_vector", "search_vector", postgresql_using="gin"),)


class File(Base):
    __tablename__ = "file"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"), index=True)
    filename: Mapped[str] = mapped_column(String(1024))
    declared_size: Mapped[int] = mapped_column(BigInteger)
    declared_content_type: Mapped[str] = mapped_column(String(255))
    declared_sha256: Mapped[str | None] = mapped_column(String(64))
    visibility: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32), index=True)
    status_detail: Mapped[str | None] = mapped_column(String(1024))
    # Filled by the verify stage from the bytes themselves.
    size: Mapped[int | None] = mapped_column(BigInteger)
    content_type: Mapped[str | None] = mapped_column(String(255))
    sha256: Mapped[str | None] = mapped_column(ForeignKey("blob.sha256"), index=True)
    stages: Mapped[dict[str, Any]] = mapped_column(default=dict)
    workflow_id: Mapped[str] = mapped_column(String(128))
    # The upload token that created it (null: an API key): that token may read it back.
    upload_token_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("upload_token.id"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    ready_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    search_vector: Mapped[str] = mapped_column(
        TSVECTOR,
        Computed(
            "to_tsvector('simple', regexp_replace(filename, '[._-]+', ' ', 'g'))", persisted=True
        ),
    )
    # The `Idempotency-Key` the create request carried, and a digest of that request: the
    # same key again answers this file's upload; with another request it is refused.
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_digest: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_file_search_vector", "search_vector", postgresql_using="gin"),
        Index("ix_file_tenant_created", "tenant_id", "created_at", "id"),
        Index(
            "uq_file_tenant_idempotency_key",
            "tenant_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )


class Upload(Base):
    """Where a file's bytes are to land; the relay resolves object keys to files through it."""

    __tablename__ = "upload"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    file_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("file.id"), unique=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"), index=True)
    bucket: Mapped[str] = mapped_column(String(63))
    object_key: Mapped[str] = mapped_column(String(1024), unique=True)
    method: Mapped[str] = mapped_column(String(16))
    # MULTIPART only: the store's own upload id and the layout of the parts.
    multipart_upload_id: Mapped[str | None] = mapped_column(String(1024))
    part_size: Mapped[int | None] = mapped_column(BigInteger)
    part_count: Mapped[int | None] = mapped_column(Integer)
    # MULTIPART: "sha256" or "crc64nvme" when declared to the store, which then insists on it.
    part_checksum: Mapped[str | None] = mapped_column(String(16))
    expires_at: Mapped[datetime]
    # Where the workflow moves the landed object (random, server-only; null for uploads made
    # before it was recorded), and when it did: from then on, anything under `object_key`
    # is a stray and is deleted on sight.
    sealed_key: Mapped[str | None] = mapped_column(String(1024))
    sealed_at: Mapped[datetime | None]
    # W3C traceparent of the request that created the upload: the relay links its handling
    # of the store event to that trace.
    traceparent: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class FileEvent(Base):
    """A file's progress events (status and stage transitions) in order, kept when its
    workflow commits an outcome: what `GET /v1/files/{id}/events` replays after the fact."""

    __tablename__ = "file_event"

    file_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("file.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "status" or "stage"
    stage: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(1024))
    at: Mapped[datetime]


class WebhookEndpoint(Base):
    """Where a tenant wants its files' terminal statuses POSTed, signed with `secret`."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenant.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    # The subscribed event names, e.g. ["file.ready", "file.failed"].
    events: Mapped[list[str]] = mapped_column(JSONB)
    # Kept in clear: every delivery is signed with it (HMAC needs the secret itself).
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    disabled_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]


class WebhookDelivery(Base):
    """One event for one endpoint: the exact body sent on every attempt, and how it went."""

    __tablename__ = "webhook_delivery"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoint.id"))
    file_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("file.id"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    # Text, not JSONB: the bytes signed and sent must be the same on every retry.
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_attempt_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]

    __table_args__ = (
        # Enqueueing an event twice (an activity retry) finds the row it made the first time.
        UniqueConstraint("endpoint_id", "file_id", "event"),
        Index("ix_webhook_delivery_endpoint_created", "endpoint_id", "created_at", "id"),
    )


class WebhookInFlight(Base):
    """A delivery attempt under way: a tenant has at most
    `webhook_max_in_flight_per_tenant` rows here at once (across every worker). A row is
    deleted when its attempt ends; one left by a worker that died lapses at `expires_at`."""

    __tablename__ = "webhook_in_flight"

    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_delivery.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    expires_at: Mapped[datetime]

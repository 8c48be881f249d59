"""The one settings object: every tunable of Conveyor, read once from `CONVEYOR_*` env vars."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import limits
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import make_url

# Development defaults. They only work against the loopback stack; production refuses them.
_DEV_SECRETS = {"conveyor-dev-access-key", "conveyor-dev-secret-key", "conveyor-dev-events-token"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", env_file=None, extra="ignore")

    environment: Literal["local", "test", "production"] = "local"
    state_dir: Path = Path(".state")
    host: str = "127.0.0.1"

    # API
    api_port: int = 8000
    api_public_url: str | None = None
    cors_origins: list[str] = ["http://localhost:3000"]
    log_level: str = "info"
    # A valid key's tenant is remembered at most this long per API process (the key lookup
    # was a third of a small request's CPU). Any change to a key or tenant drops it at once
    # (Postgres NOTIFY): this only bounds what a lost notification could leave stale.
    api_key_cache_seconds: float = 300.0
    # Requests per API key and API process ("limits" notation, e.g. "100/second;5000/hour");
    # a tenant's own `rate_limit` replaces it. Over it: 429 rate_limited with Retry-After.
    rate_limit: str = "300/second"
    # Per tenant, over files not deleted/failed/expired/cancelled/quarantined; None: no limit.
    # A tenant's own max_bytes / max_files replace these. Over them: 413 with a quota code.
    tenant_max_bytes: int | None = None
    tenant_max_files: int | None = None
    # An events stream (SSE) ends after this long and the client resumes with Last-Event-ID
    # (EventSource does so by itself): no idle watcher holds the API for hours.
    events_stream_seconds: float = 600.0
    # A file's live status comes from a workflow query, answered by a worker. A worker too
    # busy to answer within this long does not hold the request: Postgres answers instead.
    workflow_query_timeout_seconds: float = 2.0
    # What a hostile client can reach: refused cheaply, before any route runs.
    # Largest request body, by Content-Length or counted as it streams: 413 request_too_large,
    # answered before the body is read (and, on routes behind a key, after the key is checked).
    api_max_body_bytes: int = 64 * 1024
    # POST /v1/uploads/{id}/complete lists up to 10,000 parts (~1-3 MB of JSON): its own cap.
    api_max_complete_body_bytes: int = 4 * 1024 * 1024
    # uvicorn answers 503 (text/plain, Connection: close) to requests over this many open
    # connections or requests in flight.
    api_limit_concurrency: int = 1000
    # The API's Prometheus /metrics, served on `host` at this port; the API port serves none.
    api_metrics_port: int = 9467
    # /readyz answers from its last dependency probe for this long; concurrent requests share
    # one probe in flight, so a flood of /readyz does not reach Postgres, S3, Temporal, ...
    readyz_cache_seconds: float = 1.5
    # Open event streams (SSE) per tenant and API process; over: 429 too_many_streams.
    api_max_streams_per_tenant: int = 50
    # GET /v1/files/{id}?wait= requests held at once per tenant and API process (8 per upload
    # token); one more is answered at once, as if it had not asked to wait.
    api_max_waits_per_tenant: int = 100
    # Traces go over OTLP/HTTP when set (e.g. http://collector:4318/v1/traces); otherwise to
    # the local span store under the state dir, read by `conveyor trace FILE_ID`.
    otlp_traces_endpoint: str | None = None
    # Prometheus: workers and the relay serve /metrics on these ports (the API: api_metrics_port).
    worker_metrics_port: int = 9464
    worker_sdk_metrics_port: int = 9465  # the Temporal SDK's own metrics
    relay_metrics_port: int = 9466

    # Temporal
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    ingest_task_queue: str = "ingest"
    scan_task_queue: str = "scan"
    media_task_queue: str = "media"
    webhooks_task_queue: str = "webhooks"
    # Which task queues this worker process polls: run one process per queue to scale a
    # stage on its own (e.g. CONVEYOR_WORKER_QUEUES='["media"]' on OCR machines). "stages":
    # the queues of installed stages that name a queue of their own (not scan or media).
    worker_queues: list[Literal["ingest", "scan", "media", "webhooks", "stages"]] = [
        "ingest",
        "scan",
        "media",
        "webhooks",
        "stages",
    ]
    worker_max_concurrent_activities: int = 8
    # Media-queue jobs at once: thumbnails and OCR keep a core busy each, so many more than
    # the cores only thrash (bench.batch_ratio on 2 cores: 2 at once did 10 % more files/s
    # than 8); one more than the cores lets a short job (a text file's text) pass while
    # every core runs OCR (3 at once: 0.60 of the bare pool, 2: 0.54-0.58, 4: 0.60).
    # None: the cores plus one.
    worker_media_concurrent_activities: int | None = None

    # Object store (S3 API)
    s3_port: int = 8333
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key: SecretStr = SecretStr("conveyor-dev-access-key")
    s3_secret_key: SecretStr = SecretStr("conveyor-dev-secret-key")
    bucket: str = "conveyor"
    # The edge's origin: the only bucket anonymous clients may read (clean public files).
    public_bucket: str = "conveyor-public"
    # Infected objects are moved here, out of every client's reach.
    quarantine_bucket: str = "conveyor-quarantine"
    download_url_ttl_seconds: int = 300
    # SeaweedFS internals (local stack only); never exposed beyond loopback.
    swfs_master_port: int = 9333
    swfs_volume_port: int = 9340
    swfs_filer_port: int = 8888
    # How a landed upload's object is moved to its sealed key (out of every client URL's
    # reach) before it is verified: "filer_rename" (SeaweedFS, metadata only, needs the
    # filer's address and JWT signing key) or "copy" (any S3 store: server-side copy, then
    # delete; on AWS S3 the copy is server-side, on SeaweedFS it rewrites the data).
    store_move: Literal["filer_rename", "copy"] = "filer_rename"
    swfs_filer_url: str | None = None
    swfs_filer_jwt_key: SecretStr | None = None  # the local stack sets it from its state dir
    # The sweeper (a Temporal schedule) removes objects under incoming/ that belong to no
    # upload still waiting for bytes, aborts such multipart uploads, and takes up deletions
    # that did not finish; it leaves alone anything younger than the grace period.
    sweep_interval_seconds: int = 300
    stray_grace_seconds: int = 900

    # Store events: adapter (SeaweedFS webhook receiver) -> JetStream -> relay
    nats_port: int = 4222
    nats_monitor_port: int = 8222
    nats_url: str | None = None
    nats_monitor_url: str | None = None
    events_stream: str = "STORE_EVENTS"
    events_subject: str = "conveyor.store.events"
    relay_durable: str = "conveyor-relay"
    adapter_port: int = 8701
    store_events_token: SecretStr = SecretStr("conveyor-dev-events-token")

    # PostgreSQL. The app connects as `database_user`, a role that owns the database and is
    # no superuser. database_url, when set, names host, port and database (and may carry the
    # password itself); otherwise the local stack's loopback cluster on pg_port.
    pg_port: int = 5433
    database_url: str | None = None
    database_user: str = "conveyor"
    # The role's password, when the URL carries none: this, else the first line of
    # database_password_file (a mounted secret, say), else the one the local stack generated
    # for its state dir (<state_dir>/secrets/database_password, read when first needed).
    database_password: SecretStr | None = None
    database_password_file: Path | None = None

    # ClamAV and the edge (hosts default to `host`; set them where each runs elsewhere)
    clamd_host: str | None = None
    clamd_port: int = 3310
    edge_port: int = 8080
    edge_url: str | None = None
    edge_public_url: str | None = None
    # The local edge's disk cache: least recently used files go past this. A public file
    # larger than it is fetched from the store on every request.
    edge_cache_max_bytes: int = Field(default=10 * 1024**3, ge=64 * 1024**2)

    # Stages
    # Installed stages (entry points `conveyor.stages`) that do not run here, e.g. ["ocr"].
    stages_disabled: list[str] = []
    scan_max_bytes: int = 2000 * 1024 * 1024  # clamd's StreamMaxLength; larger: "too large to scan"
    # A file over scan_max_bytes: "reject" fails it ("too large to scan"); "serve_unscanned"
    # makes it ready with its scan skipped ("scanned": false, and downloads say so). An
    # archive is never served unscanned. A tenant may have its own (`conveyor tenants limits`).
    scan_oversize: Literal["reject", "serve_unscanned"] = "reject"
    # A file up to this size runs its batchable stages that share a queue (thumbnails, text,
    # OCR) in one activity, one after the other; a larger one runs each in an activity of its
    # own, at once, each showing its end as it comes. 0: never batched.
    stage_batch_max_bytes: int = Field(default=16 * 1024**2, ge=0)
    thumbnail_sizes: list[int] = [256, 1024]
    max_image_pixels: int = 64_000_000  # decompression-bomb limit for every decoded image
    ocr_languages: str = "eng"
    ocr_max_pages: int = 20
    ocr_page_timeout_seconds: int = 60
    pdf_render_dpi: int = 150
    # The text stage: characters of a document's text kept (and searched), PDF pages read,
    # and the seconds one program (pdftotext, LibreOffice) may take.
    text_max_chars: int = Field(default=1_000_000, ge=1000)
    text_max_pages: int = Field(default=200, ge=1)
    text_timeout_seconds: int = Field(default=60, ge=1)

    # Uploads
    multipart_threshold: int = 32 * 1024 * 1024  # from this size on, MULTIPART instead of PUT
    multipart_part_size: int = 8 * 1024 * 1024  # grows for huge files: at most 10,000 parts
    max_parts_per_request: int = 100
    upload_url_ttl_seconds: int = 900
    upload_expiry_seconds: int = 24 * 3600
    reconcile_after_seconds: int = 30
    max_file_size: int = 5 * 1024**4
    # The longest an upload token (POST /v1/upload-tokens, for browsers) may live.
    upload_token_max_ttl_seconds: int = 24 * 3600
    max_filename_length: int = 255

    # Outgoing webhooks: each delivery is retried with exponential backoff from the initial
    # interval up to the maximum one, until it succeeds or the deadline passes (then it is
    # marked failed). A receiver that is down for hours still gets every event.
    webhook_retry_initial_seconds: float = 5
    webhook_retry_max_interval_seconds: float = 600
    webhook_delivery_deadline_hours: float = 72
    # The whole of one attempt, wall clock: DNS, connect, TLS, sending, and the answer's
    # status line and headers. A receiver that drips bytes is cut off (and the connection
    # closed) here. It must stay well under the 60 s an attempt activity has.
    webhook_timeout_seconds: float = Field(default=10, gt=0, le=50)
    # Attempts in flight at once for one tenant, across every worker process: a tenant whose
    # receivers hang holds at most this many delivery slots. Its other deliveries wait for a
    # free one (retried shortly, not counted as attempts).
    webhook_max_in_flight_per_tenant: int = Field(default=4, ge=1)
    # Endpoint hosts that resolve to loopback/private/link-local/reserved addresses are refused
    # (at registration and at each delivery) unless this is True: webhooks must not become a
    # way into the internal network (SSRF). A local receiver needs it set on purpose.
    webhook_allow_private_urls: bool = False

    # Local stack (workers/stack)
    # More loopback ports the local stack opens. None means derived from a base port above
    # (workers/stack/ports.py), so a stack with other base ports never collides with this one.
    temporal_http_port: int | None = None  # temporal_port + 10
    temporal_metrics_port: int | None = None  # temporal_port + 11
    swfs_master_grpc_port: int | None = None  # swfs_master_port + 10000
    swfs_volume_grpc_port: int | None = None  # swfs_volume_port + 10000
    swfs_filer_grpc_port: int | None = None  # swfs_filer_port + 10000
    swfs_s3_grpc_port: int | None = None  # s3_port + 10000
    swfs_admin_port: int | None = None  # swfs_master_port + 1 (the admin UI stays off)
    swfs_admin_grpc_port: int | None = None  # swfs_admin_port + 10000

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        limits.parse_many(value)  # raises ValueError on a malformed limit
        return value

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> Settings:
        if self.environment == "production":
            for name in ("s3_access_key", "s3_secret_key", "store_events_token"):
                value: SecretStr = getattr(self, name)
                if value.get_secret_value() in _DEV_SECRETS:
                    raise ValueError(f"CONVEYOR_{name.upper()} must be set in production")
        return self

    @property
    def media_concurrency(self) -> int:
        return self.worker_media_concurrent_activities or (os.cpu_count() or 1) + 1

    @property
    def state_path(self) -> Path:
        return self.state_dir.resolve()

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or f"{self.host}:{self.temporal_port}"

    @property
    def s3_endpoint(self) -> str:
        return self.s3_endpoint_url or f"http://{self.host}:{self.s3_port}"

    @property
    def s3_public_endpoint(self) -> str:
        return self.s3_public_endpoint_url or self.s3_endpoint

    @property
    def swfs_filer(self) -> str:
        return self.swfs_filer_url or f"http://{self.host}:{self.swfs_filer_port}"

    @property
    def nats_servers(self) -> str:
        return self.nats_url or f"nats://{self.host}:{self.nats_port}"

    @property
    def nats_monitor(self) -> str:
        return self.nats_monitor_url or f"http://{self.host}:{self.nats_monitor_port}"

    @property
    def clamd_address(self) -> tuple[str, int]:
        return (self.clamd_host or self.host, self.clamd_port)

    @property
    def edge(self) -> str:
        """Where Conveyor's own processes reach the edge (readiness, purges)."""
        return self.edge_url or f"http://{self.host}:{self.edge_port}"

    @property
    def edge_public(self) -> str:
        """Where clients reach the edge (CDN URLs)."""
        return self.edge_public_url or self.edge

    @property
    def local_database_password_file(self) -> Path:
        """Where the local stack keeps the app role's generated password (mode 0600)."""
        return self.state_path / "secrets" / "database_password"

    def _database_password(self) -> str | None:
        if self.database_password is not None:
            return self.database_password.get_secret_value()
        path = self.database_password_file or self.local_database_password_file
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            if self.database_password_file is not None:
                raise  # named explicitly: its absence is a mistake, not a default
            return None  # no local stack made yet: libpq then says no password was supplied
        return lines[0] if lines else ""

    @property
    def sqlalchemy_url(self) -> str:
        url = make_url(
            self.database_url
            or f"postgresql+psycopg://{self.database_user}@{self.host}:{self.pg_port}/conveyor"
        )
        if url.password is None:
            password = self._database_password()
            if password is not None:
                url = url.set(password=password)
        return url.render_as_string(hide_password=False)

    @property
    def libpq_url(self) -> str:
        """The same database as a URL psycopg (libpq) takes directly, without SQLAlchemy."""
        url = make_url(self.sqlalchemy_url).set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    @property
    def api_url(self) -> str:
        return self.api_public_url or f"http://{self.host}:{self.api_port}"

    @property
    def browser_origins(self) -> list[str]:
        """Origins whose pages may upload to the store and call the API: the configured ones
        and the API's own (its upload page, `/ui`)."""
        split = urlsplit(self.api_url)
        own = f"{split.scheme}://{split.netloc}"
        return sorted({*self.cors_origins, own})


@lru_cache
def get_settings() -> Settings:
    return Settings()

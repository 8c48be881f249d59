"""The FastAPI application: clients are created once in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor

from api.deps import AppState
from api.errors import document_errors_as_json, install_error_handlers
from api.key_cache import KeyCache, listen_for_key_changes
from api.limits import RateLimiter, StreamSlots
from api.middleware import Gatekeeper
from api.probe_cache import SharedProbe
from api.routes import file_events, files, health, ui, upload_tokens, uploads, uppy, webhooks
from conveyor_core.db.session import ping_when_idle
from conveyor_core.multipart_calls import MultipartCalls
from conveyor_core.objectstore import PartSigner, make_s3_client
from conveyor_core.payloads import DATA_CONVERTER
from conveyor_core.settings import Settings
from conveyor_core.stage_registry import installed_stage_names
from observability.redaction import redact_server_span


def begin_draining(app: FastAPI) -> None:
    """The process is stopping: held answers and event streams end now (see AppState)."""
    state: AppState | None = getattr(app.state, "conveyor", None)
    if state is not None:
        state.draining.set()


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(settings.sqlalchemy_url, pool_size=10, pool_use_lifo=True)
        ping_when_idle(engine.sync_engine, idle_seconds=10)
        # lazy: the API starts (and answers /healthz) even while Temporal is still coming up.
        temporal = await Client.connect(
            settings.temporal_target,
            namespace=settings.temporal_namespace,
            lazy=True,
            interceptors=[TracingInterceptor()],
            data_converter=DATA_CONVERTER,
        )
        app.state.conveyor = AppState(
            settings=settings,
            sessions=async_sessionmaker(engine, expire_on_commit=False),
            autocommit_sessions=async_sessionmaker(
                engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
            ),
            temporal=temporal,
            s3=make_s3_client(settings),
            s3_presign=make_s3_client(settings, public=True),
            part_signer=PartSigner(settings),
            multipart_calls=MultipartCalls(settings),
            known_keys=KeyCache(max_age=settings.api_key_cache_seconds),
            rate_limiter=RateLimiter(),
            stream_slots=StreamSlots(settings.api_max_streams_per_tenant),
            wait_slots=StreamSlots(settings.api_max_waits_per_tenant),
            stage_names=installed_stage_names(settings),
        )
        app.state.conveyor.readiness = SharedProbe(
            functools.partial(health.probe_dependencies, app.state.conveyor),
            max_age=settings.readyz_cache_seconds,
        )
        listener = asyncio.create_task(
            listen_for_key_changes(settings.libpq_url, app.state.conveyor.known_keys),
            name="key-change-listener",
        )
        try:
            yield
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await engine.dispose()

    # Spans come from the OpenTelemetry instrumentor below; FastAPI's own telemetry, left on,
    # asks the global providers whether they are configured on every request.
    app = FastAPI(
        title="Conveyor",
        version="1",
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    # Inside CORS: a preflight is answered before it, and its refusals carry CORS headers.
    routers = [
        health.router,
        uploads.router,
        upload_tokens.router,
        files.router,
        file_events.router,
        webhooks.router,
        uppy.router,
    ]
    app.add_middleware(Gatekeeper, settings=settings, routers=routers)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.browser_origins,
        allow_methods=["GET", "POST", "DELETE"],
        # What a page sends: its upload token, JSON, a create's key, an event stream's resume.
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
        expose_headers=["Idempotent-Replayed", "Retry-After"],
    )
    install_error_handlers(app)
    document_errors_as_json(app)
    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls="healthz,readyz",
        exclude_spans=["receive", "send"],
        server_request_hook=redact_server_span,
    )
    for router in routers:
        app.include_router(router)
    app.include_router(ui.ui_router(settings))
    app.mount(ui.ASSETS_PATH, ui.assets(), name="ui-assets")
    return app

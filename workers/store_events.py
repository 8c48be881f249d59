"""Store-event adapter: SeaweedFS filer webhook in, S3 event records into JetStream out.

It answers 2xx only after JetStream acknowledged the event, and sets `Nats-Msg-Id` so a
re-sent webhook is stored once. Stores that publish natively (AWS S3, MinIO, Ceph RGW)
skip this process and feed the stream directly.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import nats
import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from nats.js import JetStreamContext

from conveyor_core.events import from_seaweedfs_webhook, to_s3_record
from conveyor_core.settings import Settings, get_settings
from observability.logging import configure_logging

log = logging.getLogger(__name__)


def create_adapter_app(settings: Settings) -> FastAPI:
    token = settings.store_events_token.get_secret_value()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nc = await nats.connect(settings.nats_servers, max_reconnect_attempts=-1)
        app.state.js = nc.jetstream()
        try:
            yield
        finally:
            await nc.drain()

    app = FastAPI(title="Conveyor store-event adapter", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/seaweedfs/events")
    async def seaweedfs_event(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        if not hmac.compare_digest(authorization or "", f"Bearer {token}"):
            return _answer(401, "invalid_token", "The bearer token is not valid.")
        try:
            payload: Any = json.loads(await request.body())
        except ValueError:
            return _answer(400, "invalid_json", "The body is not JSON.")
        event = from_seaweedfs_webhook(payload) if isinstance(payload, dict) else None
        if event is None:
            return JSONResponse({"status": "ignored"})
        record = to_s3_record(event, datetime.now(UTC).isoformat())
        js: JetStreamContext = request.app.state.js
        try:
            await js.publish(
                settings.events_subject,
                json.dumps({"Records": [record]}).encode(),
                headers={"Nats-Msg-Id": event.dedup_id},
                timeout=5,
            )
        except Exception as e:  # any publish failure: the store must hear "not delivered"
            log.warning("publish of %s failed: %s", event.key, e)
            return _answer(503, "queue_unavailable", "The event queue did not accept the event.")
        return JSONResponse({"status": "published"})

    return app


def _answer(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


if __name__ == "__main__":
    settings = get_settings()
    configure_logging("adapter", settings.log_level)
    uvicorn.run(
        create_adapter_app(settings),
        host=settings.host,
        port=settings.adapter_port,
        log_level=settings.log_level,
        log_config=None,
    )

"""The event relay: a durable JetStream consumer that turns object-created events into
`object_uploaded` signals, acknowledging each message only after its signal was accepted.

Unknown objects are acknowledged and skipped; an object under the key of an upload that takes
no more bytes (sealed, cancelled, expired, failed, deleted) is a stray: deleted, logged and
counted as tampering; a closed workflow ignores the event; any other failure is negatively
acknowledged so JetStream redelivers it later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.service import RPCError, RPCStatusCode

from activities.strays import Strays
from conveyor_core.db.models import File, Upload
from conveyor_core.db.session import make_engine, make_session_factory
from conveyor_core.events import ObjectCreated, parse_s3_event
from conveyor_core.objectstore import make_s3_client
from conveyor_core.settings import Settings, get_settings
from conveyor_core.types import ObjectUploaded
from observability.logging import configure_logging
from observability.metrics import RELAY_EVENTS, RELAY_LAG, RELAY_REDELIVERIES, serve_metrics
from observability.tracing import configure_tracing, context_of
from workflows.ingest import IngestWorkflow

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)
FETCH_BATCH = 32
ACK_WAIT_SECONDS = 30
REDELIVER_DELAY_SECONDS = 2


@dataclass(frozen=True)
class Target:
    workflow_id: str
    file_id: str
    traceparent: str | None  # of the request that created the upload


def resolve(sessions: sessionmaker[Session], event: ObjectCreated) -> Target | None:
    """The workflow waiting for this object, if it is an upload of ours."""
    with sessions() as session:
        row = session.execute(
            select(File.workflow_id, File.id, Upload.traceparent)
            .join(Upload, Upload.file_id == File.id)
            .where(Upload.bucket == event.bucket, Upload.object_key == event.key)
        ).first()
    if row is None:
        return None
    return Target(workflow_id=row.workflow_id, file_id=str(row.id), traceparent=row.traceparent)


class Relay:
    def __init__(self, temporal: Client, sessions: sessionmaker[Session], strays: Strays) -> None:
        self._temporal = temporal
        self._sessions = sessions
        self._strays = strays

    async def handle(self, msg: Msg) -> None:
        if msg.metadata.num_delivered > 1:
            RELAY_REDELIVERIES.inc()
        try:
            payload = json.loads(msg.data)
        except ValueError:
            log.warning("dropping a message that is not JSON (seq %s)", msg.metadata.sequence)
            await msg.term()
            return
        events = parse_s3_event(payload) if isinstance(payload, dict) else []
        try:
            for event in events:
                await self._signal(event)
        except Exception:
            log.exception("event not relayed; it will be redelivered")
            RELAY_EVENTS.labels("failed").inc()
            await msg.nak(delay=REDELIVER_DELAY_SECONDS)
            return
        await msg.ack()
        published = msg.metadata.timestamp
        if published is not None:
            RELAY_LAG.observe(max(0.0, (datetime.now(UTC) - published).total_seconds()))

    async def _signal(self, event: ObjectCreated) -> None:
        owner = await asyncio.to_thread(self._strays.owner, event.bucket, event.key)
        if owner.stray:
            # Written to the key of an upload that takes no more bytes: the sealed bytes
            # stay as verified, and this object goes at once.
            removed = await asyncio.to_thread(self._strays.remove, event.bucket, event.key, "event")
            RELAY_EVENTS.labels("stray_deleted" if removed else "stray_gone").inc()
            return
        target = await asyncio.to_thread(resolve, self._sessions, event) if owner.known else None
        if target is None:
            log.info("no upload waits for %s/%s; skipped", event.bucket, event.key)
            RELAY_EVENTS.labels("unknown_object").inc()
            return
        handle = self._temporal.get_workflow_handle_for(IngestWorkflow.run, target.workflow_id)
        # The handling joins the upload's own trace (kept by the API), so an operator sees
        # the event's arrival between the request and the workflow's work.
        with tracer.start_as_current_span(
            "relay object_uploaded",
            context=context_of(target.traceparent),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "conveyor.file_id": target.file_id,
                "conveyor.object_key": event.key,
                "messaging.system": "nats",
            },
        ):
            await self._signal_workflow(handle, event, target)

    async def _signal_workflow(
        self, handle: WorkflowHandle[IngestWorkflow, Any], event: ObjectCreated, target: Target
    ) -> None:
        try:
            await handle.signal(
                IngestWorkflow.object_uploaded,
                ObjectUploaded(
                    bucket=event.bucket,
                    key=event.key,
                    size=event.size,
                    etag=event.etag,
                    sequencer=event.sequencer,
                ),
            )
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
            log.info("workflow %s is closed; event for it ignored", target.workflow_id)
            RELAY_EVENTS.labels("workflow_closed").inc()
            return
        RELAY_EVENTS.labels("signalled").inc()


async def main(settings: Settings) -> None:
    temporal = await Client.connect(
        settings.temporal_target,
        namespace=settings.temporal_namespace,
        interceptors=[TracingInterceptor()],
    )
    sessions = make_session_factory(make_engine(settings))
    relay = Relay(temporal, sessions, Strays(make_s3_client(settings), sessions))
    serve_metrics(settings.relay_metrics_port, settings.host)
    nc = await nats.connect(settings.nats_servers, max_reconnect_attempts=-1)
    js = nc.jetstream()
    subscription = await js.pull_subscribe(
        settings.events_subject,
        durable=settings.relay_durable,
        stream=settings.events_stream,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ACK_WAIT_SECONDS,
            max_deliver=-1,
        ),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("relay consuming %s as %s", settings.events_subject, settings.relay_durable)
    while not stop.is_set():
        try:
            messages = await subscription.fetch(FETCH_BATCH, timeout=1)
        except TimeoutError:  # nothing to fetch (nats-py raises both its own and asyncio's)
            continue
        except nats.errors.Error as e:  # the connection reconnects by itself; poll again
            log.warning("fetch failed: %s", e)
            await asyncio.sleep(1)
            continue
        for msg in messages:
            await relay.handle(msg)
    log.info("relay stopping")
    await nc.close()


if __name__ == "__main__":
    settings = get_settings()
    configure_logging("relay", settings.log_level)
    configure_tracing(settings, "relay")
    asyncio.run(main(settings))

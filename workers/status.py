"""`conveyor status`: every component Conveyor depends on, up or down, with its version.

Talks to each server as the application does (from the settings), so it works the same
against the local stack and a production deployment."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import psycopg
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from conveyor_core.objectstore import make_s3_client
from conveyor_core.settings import Settings

TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    up: bool
    version: str | None
    detail: str | None = None


async def _postgres(settings: Settings) -> str:
    async with await psycopg.AsyncConnection.connect(settings.libpq_url, connect_timeout=3) as conn:
        row = await (await conn.execute("SHOW server_version")).fetchone()
    return str(row[0]) if row else "?"


async def _temporal(settings: Settings) -> str:
    client = await Client.connect(settings.temporal_target, namespace=settings.temporal_namespace)
    info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
    return info.server_version or "?"


async def _object_store(settings: Settings) -> str:
    def head() -> str:
        response = make_s3_client(settings).head_bucket(Bucket=settings.bucket)
        return str(response["ResponseMetadata"]["HTTPHeaders"].get("server", "S3"))

    return await asyncio.to_thread(head)


async def _nats(settings: Settings) -> str:
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
        response = await client.get(f"{settings.nats_monitor}/varz")
        response.raise_for_status()
        return str(response.json().get("version", "?"))


async def _clamd(settings: Settings) -> str:
    def version() -> str:
        with socket.create_connection(settings.clamd_address, timeout=TIMEOUT_SECONDS) as sock:
            sock.sendall(b"zVERSION\0")
            return sock.recv(256).rstrip(b"\0").decode()

    return await asyncio.to_thread(version)


async def _http_server(url: str) -> str:
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
        response = await client.get(url)
        return str(response.headers.get("server", f"HTTP {response.status_code}"))


async def _api(settings: Settings) -> str:
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
        response = await client.get(f"{settings.api_url}/openapi.json")
        response.raise_for_status()
        return f"Conveyor API v{response.json()['info']['version']}"


CHECKS: dict[str, Callable[[Settings], Awaitable[str]]] = {
    "api": _api,
    "postgres": _postgres,
    "temporal": _temporal,
    "object_store": _object_store,
    "nats": _nats,
    "clamd": _clamd,
    "edge": lambda settings: _http_server(f"{settings.edge}/"),
}


async def _check(name: str, settings: Settings) -> ComponentStatus:
    try:
        version = await asyncio.wait_for(CHECKS[name](settings), TIMEOUT_SECONDS * 2)
    except Exception as e:  # a status report names every failure, whatever its kind
        return ComponentStatus(name, False, None, f"{type(e).__name__}: {e}"[:200])
    return ComponentStatus(name, True, version)


async def component_statuses(settings: Settings) -> list[ComponentStatus]:
    return list(await asyncio.gather(*(_check(name, settings) for name in CHECKS)))

"""Liveness and readiness. Readiness checks every dependency, each with a short timeout; its
answer is shared for `readyz_cache_seconds` (api.probe_cache), so a flood of /readyz reaches
the dependencies about once per that while."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import AppState, StateDep
from api.schemas import HealthPublic, ReadinessPublic
from observability.metrics import READINESS_PROBES

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_SECONDS = 3.0


@router.get("/healthz", response_model=HealthPublic)
async def healthz() -> HealthPublic:
    return HealthPublic()


@router.get(
    "/readyz",
    response_model=ReadinessPublic,
    responses={503: {"model": ReadinessPublic, "description": "a dependency is down"}},
)
async def readyz(state: StateDep) -> JSONResponse:
    """Every dependency's state, as probed at most `readyz_cache_seconds` ago."""
    results = await state.readiness.get()
    ready = all(outcome == "ok" for outcome in results.values())
    body = ReadinessPublic(status="ready" if ready else "not_ready", checks=results)
    return JSONResponse(status_code=200 if ready else 503, content=body.model_dump())


async def probe_dependencies(state: AppState) -> dict[str, str]:
    """Each dependency's outcome ("ok", "timed out", "down: <error>"), probed at once."""
    READINESS_PROBES.inc()
    checks: dict[str, Callable[[AppState], Awaitable[None]]] = {
        "postgres": _postgres,
        "object_store": _object_store,
        "temporal": _temporal,
        "nats": _nats,
        "clamd": _clamd,
        "edge": _edge,
    }
    outcomes = await asyncio.gather(*(_run(check, state) for check in checks.values()))
    return dict(zip(checks, outcomes, strict=True))


async def _run(check: Callable[[AppState], Awaitable[None]], state: AppState) -> str:
    try:
        await asyncio.wait_for(check(state), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return "timed out"
    except Exception as e:  # a readiness probe reports every failure, whatever its kind
        return f"down: {type(e).__name__}"
    return "ok"


async def _postgres(state: AppState) -> None:
    async with state.sessions() as session:
        await session.execute(text("SELECT 1"))


async def _object_store(state: AppState) -> None:
    await asyncio.to_thread(state.s3.head_bucket, Bucket=state.settings.bucket)


async def _temporal(state: AppState) -> None:
    if not await state.temporal.service_client.check_health():
        raise RuntimeError("unhealthy")


async def _nats(state: AppState) -> None:
    url = f"{state.settings.nats_monitor}/healthz?js-enabled-only=true"
    async with httpx.AsyncClient() as client:
        (await client.get(url)).raise_for_status()


async def _clamd(state: AppState) -> None:
    reader, writer = await asyncio.open_connection(*state.settings.clamd_address)
    try:
        writer.write(b"zPING\0")
        await writer.drain()
        if (await reader.read(16)).rstrip(b"\0") != b"PONG":
            raise RuntimeError("no PONG")
    finally:
        writer.close()


async def _edge(state: AppState) -> None:
    async with httpx.AsyncClient() as client:
        await client.get(f"{state.settings.edge}/")

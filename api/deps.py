"""Dependency wiring: clients made once in the lifespan, handed to routes as `Annotated` aliases."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Protocol

from fastapi import Depends, Header, Request
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.errors import ErrorCode, Forbidden, Unauthorized
from api.key_cache import KeyCache
from api.limits import RateLimiter, StreamSlots
from api.probe_cache import SharedProbe
from conveyor_core.db.models import ApiKey, Tenant, UploadToken
from conveyor_core.keys import TOKEN_PREFIX, hash_api_key
from conveyor_core.multipart_calls import MultipartCalls
from conveyor_core.objectstore import PartSigner
from conveyor_core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True)
class TokenScope:
    """What an upload token may do, besides uploading: read back the files it created."""

    id: uuid.UUID
    max_file_size: int | None
    max_files: int | None
    content_types: list[str] | None
    allow_public: bool


@dataclass(frozen=True)
class Tenancy:
    tenant_id: uuid.UUID
    tenant_name: str
    key_hash: str
    # Effective limits: the tenant's own, else the settings' defaults.
    rate_limit: str
    max_bytes: int | None
    max_files: int | None
    scan_oversize: str  # reject | serve_unscanned
    # Set when the request came with an upload token rather than an API key.
    token: TokenScope | None = None


@dataclass
class AppState:
    """What the lifespan builds once per process."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    # The same pool, each statement its own transaction: no BEGIN and ROLLBACK round trips
    # around reads, for the routes whose writes are one statement.
    autocommit_sessions: async_sessionmaker[AsyncSession]
    temporal: Client
    s3: S3Client
    s3_presign: S3Client
    part_signer: PartSigner
    multipart_calls: MultipartCalls
    # key hash -> tenancy of valid keys, dropped whenever a key or tenant changes.
    known_keys: KeyCache[Tenancy]
    rate_limiter: RateLimiter
    stream_slots: StreamSlots
    wait_slots: StreamSlots  # held answers (?wait=), counted as streams are
    stage_names: list[str]  # the installed stages (entry points), shown pending at first
    # /readyz's probe of every dependency, shared (set by the lifespan once this exists).
    readiness: SharedProbe[dict[str, str]] = field(init=False)
    # Set when the process is asked to stop: held answers are given now and event streams
    # end (clients reconnect), so a restart does not wait for them.
    draining: asyncio.Event = field(default_factory=asyncio.Event)


# async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request.
async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.conveyor
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings_dep(state: StateDep) -> Settings:
    return state.settings


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    async with state.sessions() as session:
        yield session


async def get_autocommit_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    async with state.autocommit_sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
AutocommitSessionDep = Annotated[AsyncSession, Depends(get_autocommit_session)]


# Built once: a request does not build it again (nor SQLAlchemy key and look it up).
# A tenancy's tenant columns, for keys and upload tokens alike (see _TenantRow).
TENANT_COLUMNS = (
    Tenant.id,
    Tenant.name,
    Tenant.rate_limit,
    Tenant.max_bytes,
    Tenant.max_files,
    Tenant.scan_oversize,
)
KEY_TENANCY = (
    select(*TENANT_COLUMNS)
    .join(ApiKey, ApiKey.tenant_id == Tenant.id)
    .where(ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None))
)


async def authenticate(state: AppState, authorization: str | None) -> Tenancy:
    """The tenancy of the request's key, from the cache or Postgres; counts the request
    against the key's rate. Raises 401 (no key, a bad key) or 429 rate_limited."""
    if not authorization:
        raise Unauthorized(
            "Send an API key as 'Authorization: Bearer <key>'.", code=ErrorCode.MISSING_API_KEY
        )
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized(
            "Send an API key as 'Authorization: Bearer <key>'.", code=ErrorCode.MISSING_API_KEY
        )
    key_hash = hash_api_key(key.strip())
    if key.strip().startswith(TOKEN_PREFIX):
        scoped = await _token_tenancy(state, key_hash)
        state.rate_limiter.hit(key_hash, scoped.rate_limit)
        return scoped
    tenancy = state.known_keys.get(key_hash)
    if tenancy is None:
        generation = state.known_keys.generation
        # AUTOCOMMIT: a lookup needs no transaction around it; the connection goes back to
        # the pool at once.
        async with state.autocommit_sessions() as session:
            row = (await session.execute(KEY_TENANCY, {"key_hash": key_hash})).first()
        if row is None:
            raise Unauthorized("The API key is not valid.")
        tenancy = _tenancy(state.settings, row, key_hash)
        state.known_keys.put(key_hash, tenancy, generation)
    state.rate_limiter.hit(key_hash, tenancy.rate_limit)
    return tenancy


TOKEN_TENANCY = (
    select(
        *TENANT_COLUMNS,
        UploadToken.id.label("token_id"),
        UploadToken.expires_at,
        UploadToken.revoked_at,
        UploadToken.max_file_size,
        UploadToken.max_files.label("token_max_files"),
        UploadToken.content_types,
        UploadToken.allow_public,
    )
    .join(UploadToken, UploadToken.tenant_id == Tenant.id)
    .where(UploadToken.token_hash == bindparam("token_hash"))
)


async def _token_tenancy(state: AppState, token_hash: str) -> Tenancy:
    """An upload token's tenancy, looked up every time (never cached): a revoked or expired
    token stops working at once."""
    async with state.autocommit_sessions() as session:
        row = (await session.execute(TOKEN_TENANCY, {"token_hash": token_hash})).first()
    if row is None:
        raise Unauthorized("The upload token is not valid.")
    if row.revoked_at is not None or row.expires_at <= datetime.now(UTC):
        raise Unauthorized(
            "The upload token has expired or was revoked; ask the app for a new one.",
            code=ErrorCode.UPLOAD_TOKEN_EXPIRED,
        )
    scope = TokenScope(
        id=row.token_id,
        max_file_size=row.max_file_size,
        max_files=row.token_max_files,
        content_types=row.content_types,
        allow_public=row.allow_public,
    )
    return _tenancy(state.settings, row, token_hash, scope)


class _TenantRow(Protocol):
    id: uuid.UUID
    name: str
    rate_limit: str | None
    max_bytes: int | None
    max_files: int | None
    scan_oversize: str | None


def _tenancy(
    settings: Settings, row: _TenantRow, key_hash: str, token: TokenScope | None = None
) -> Tenancy:
    """A tenant row's tenancy: its own limits, else the settings' defaults."""
    return Tenancy(
        tenant_id=row.id,
        tenant_name=row.name,
        key_hash=key_hash,
        rate_limit=row.rate_limit or settings.rate_limit,
        max_bytes=row.max_bytes if row.max_bytes is not None else settings.tenant_max_bytes,
        max_files=row.max_files if row.max_files is not None else settings.tenant_max_files,
        scan_oversize=row.scan_oversize or settings.scan_oversize,
        token=token,
    )


# Where api.middleware.Gatekeeper leaves the tenancy it checked (in `scope["state"]`), so a
# request's key is looked up and counted once.
TENANCY_STATE_KEY = "conveyor_tenancy"


async def get_uploader(
    request: Request,
    state: StateDep,
    # Documented here (OpenAPI); read by the Gatekeeper before the route runs.
    authorization: Annotated[str | None, Header()] = None,
) -> Tenancy:
    """An API key's tenancy, or an upload token's (scoped: `tenancy.token`)."""
    checked = getattr(request.state, TENANCY_STATE_KEY, None)
    if isinstance(checked, Tenancy):
        return checked
    # Only without the Gatekeeper in front (an app assembled otherwise): check it here.
    return await authenticate(state, authorization)


async def get_tenancy(
    request: Request,
    state: StateDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Tenancy:
    """An API key's tenancy; an upload token is refused (403), whatever the route."""
    tenancy = await get_uploader(request, state, authorization)
    if tenancy.token is not None:
        raise Forbidden(
            "An upload token may only upload and read the files it uploaded; this needs an "
            "API key.",
            code=ErrorCode.UPLOAD_TOKEN_NOT_ALLOWED,
        )
    return tenancy


TenancyDep = Annotated[Tenancy, Depends(get_tenancy)]
# Routes an upload token may use too; each keeps the token to what it created.
UploaderDep = Annotated[Tenancy, Depends(get_uploader)]

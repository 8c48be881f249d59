"""Per-key request rate limits (the `limits` library, in this process's memory), the
per-tenant storage quotas checked when an upload is declared, and the per-tenant cap on open
event streams."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import limits
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ErrorCode, PayloadTooLarge, TooManyRequests
from conveyor_core.db.models import File, Tenant
from conveyor_core.types import FileStatus

# Files that hold (or will hold) bytes for their tenant, and how many.
HOLDING = (FileStatus.AWAITING_UPLOAD.value, FileStatus.PROCESSING.value, FileStatus.READY.value)
HELD_BYTES = func.coalesce(File.size, File.declared_size)


def tenant_usage(tenant_id: uuid.UUID) -> Select[int, int]:
    """(files, bytes) the tenant holds, as its quotas count them."""
    return select(func.count(), func.coalesce(func.sum(HELD_BYTES), 0)).where(
        File.tenant_id == tenant_id, File.status.in_(HOLDING)
    )


@lru_cache(maxsize=256)
def parse_rate(rate: str) -> tuple[limits.RateLimitItem, ...]:
    return tuple(limits.parse_many(rate))


EXPIRY_INTERVAL_SECONDS = 1.0
# A stream refused for the tenant's cap: about when one of its others may have ended.
STREAM_RETRY_AFTER_SECONDS = 5


class InlineExpiryStorage(MemoryStorage):
    """limits' in-memory storage, expiring old entries inline, at most once a second.

    MemoryStorage starts a threading.Timer to expire entries after a hit whenever the last
    timer has ended: under sparse traffic a new thread per request, a third of a millisecond
    of the API's CPU each. This overrides its private `__schedule_expiry` hook (limits 5);
    tests/unit/test_rate_limiter.py fails if that hook goes away.
    """

    def __init__(self) -> None:
        super().__init__()
        self.timer.cancel()  # the one MemoryStorage starts at once
        self._expired_at = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now - self._expired_at >= EXPIRY_INTERVAL_SECONDS:
            self._expired_at = now
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]


class RateLimiter:
    """Moving-window counts per key hash. Each API process counts its own requests: with N
    processes behind a balancer a key gets up to N times the limit."""

    def __init__(self) -> None:
        self.storage = InlineExpiryStorage()
        self._limiter = MovingWindowRateLimiter(self.storage)

    def hit(self, key_hash: str, rate: str) -> None:
        """Counts one request; raises 429 rate_limited when a window is full."""
        for item in parse_rate(rate):
            if not self._limiter.hit(item, key_hash):
                reset = self._limiter.get_window_stats(item, key_hash).reset_time
                wait = max(1, math.ceil(reset - time.time()))
                raise TooManyRequests(
                    f"This key is limited to {item}; try again in {wait} s.",
                    headers={"Retry-After": str(wait)},
                )


async def check_quota(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    size: int,
    max_bytes: int | None,
    max_files: int | None,
) -> None:
    """Refuses an upload that would take the tenant over its quota. The tenant's row is
    locked until the declaring transaction ends, so concurrent uploads cannot both slip in."""
    if max_bytes is None and max_files is None:
        return
    await session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
    files, used = (await session.execute(tenant_usage(tenant_id))).one()
    if max_files is not None and files + 1 > max_files:
        raise PayloadTooLarge(
            f"This tenant holds {files} files, its limit is {max_files}; delete some first.",
            code=ErrorCode.FILE_QUOTA_EXCEEDED,
        )
    if max_bytes is not None and used + size > max_bytes:
        raise PayloadTooLarge(
            f"This tenant holds {used} bytes and its limit is {max_bytes}; {size} more do not fit.",
            code=ErrorCode.STORAGE_QUOTA_EXCEEDED,
        )


class StreamSlots:
    """Open event streams per tenant in this process: each holds an HTTP connection and polls
    Postgres and Temporal, so one tenant's few hundred streams must not crowd out the rest.
    An upload token (one browser) holds a few of its tenant's at most, so one user of an
    app cannot take the streams of all the others."""

    def __init__(self, per_tenant: int, per_token: int = 8) -> None:
        self.per_tenant = per_tenant
        self.per_token = per_token
        self._open: dict[uuid.UUID, int] = {}

    def open_streams(self, tenant_id: uuid.UUID) -> int:
        return self._open.get(tenant_id, 0)

    @contextmanager
    def hold(self, tenant_id: uuid.UUID, token_id: uuid.UUID | None = None) -> Iterator[None]:
        """One slot while the block runs (a token's and its tenant's); raises 429
        too_many_streams when none is free."""
        if token_id is None:
            with self._slot(tenant_id, self.per_tenant, "This tenant"):
                yield
            return
        with self._slot(token_id, self.per_token, "This upload token"):
            with self._slot(tenant_id, self.per_tenant, "This tenant"):
                yield

    @contextmanager
    def _slot(self, owner: uuid.UUID, limit: int, who: str) -> Iterator[None]:
        held = self._open.get(owner, 0)
        if held >= limit:
            raise TooManyRequests(
                f"{who} already has {held} event streams open here, its limit; "
                "close one or try again shortly.",
                code=ErrorCode.TOO_MANY_STREAMS,
                headers={"Retry-After": str(STREAM_RETRY_AFTER_SECONDS)},
            )
        self._open[owner] = held + 1
        try:
            yield
        finally:
            left = self._open[owner] - 1
            if left:
                self._open[owner] = left
            else:
                del self._open[owner]

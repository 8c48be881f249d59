"""The API's pool pings a connection only after it sat idle, and replaces a dead one."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from conveyor_core.db.session import ping_when_idle
from conveyor_core.settings import Settings


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        pid: int = (await connection.execute(text("select pg_backend_pid()"))).scalar_one()
        return pid


async def terminate(engine: AsyncEngine, pid: int) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("select pg_terminate_backend(:pid)"), {"pid": pid})


@pytest.fixture
async def admin(stack: Settings) -> AsyncEngine:
    return create_async_engine(stack.sqlalchemy_url, pool_size=1)


async def test_an_idle_connection_that_died_is_replaced(
    stack: Settings, admin: AsyncEngine
) -> None:
    engine = create_async_engine(stack.sqlalchemy_url, pool_size=1, pool_use_lifo=True)
    ping_when_idle(engine.sync_engine, idle_seconds=0)
    try:
        first = await backend_pid(engine)
        await terminate(admin, first)
        # Checked out again: the ping finds it dead, the pool opens another, no error.
        second = await backend_pid(engine)
        assert second != first
    finally:
        await engine.dispose()
        await admin.dispose()


async def test_a_connection_used_moments_ago_is_not_pinged(
    stack: Settings, admin: AsyncEngine
) -> None:
    engine = create_async_engine(stack.sqlalchemy_url, pool_size=1, pool_use_lifo=True)
    ping_when_idle(engine.sync_engine, idle_seconds=60)
    try:
        first = await backend_pid(engine)
        await terminate(admin, first)
        # Not idle long enough to be pinged: the first use fails (the API answers 503) and
        # SQLAlchemy drops the pool, so the next checkout connects afresh.
        with pytest.raises(DBAPIError):
            await backend_pid(engine)
        assert await backend_pid(engine) != first
    finally:
        await engine.dispose()
        await admin.dispose()


async def test_a_pinged_connection_can_be_checked_out_in_autocommit(stack: Settings) -> None:
    """The ping leaves no transaction open, so the API's AUTOCOMMIT sessions can take a
    connection it just pinged (they could not: the checkout answered 500)."""
    engine = create_async_engine(stack.sqlalchemy_url, pool_size=1, pool_use_lifo=True)
    ping_when_idle(engine.sync_engine, idle_seconds=0)
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    try:
        await backend_pid(engine)
        async with autocommit.connect() as connection:  # pinged first
            first = (await connection.execute(text("select txid_current()"))).scalar_one()
            second = (await connection.execute(text("select txid_current()"))).scalar_one()
        assert first != second  # each statement its own transaction
        async with engine.connect() as connection:  # pinged again, back in a transaction
            first = (await connection.execute(text("select txid_current()"))).scalar_one()
            second = (await connection.execute(text("select txid_current()"))).scalar_one()
        assert first == second
    finally:
        await engine.dispose()

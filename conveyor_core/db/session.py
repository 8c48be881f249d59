"""Engine and session factory, built once per process from the settings."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from conveyor_core.settings import Settings


def make_engine(settings: Settings, pool_size: int = 5) -> Engine:
    return create_engine(settings.sqlalchemy_url, pool_pre_ping=True, pool_size=pool_size)


def ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """`pool_pre_ping`, but only for a connection that sat idle in the pool `idle_seconds` or
    more. A ping per checkout is a round trip per API request (a fifth of a request's CPU);
    a connection in use moments ago is alive, or its error is answered 503 and SQLAlchemy
    drops the whole pool. Use with `pool_use_lifo`, so the busy connections stay hot."""

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            # In autocommit, or the ping would leave a transaction open that the checkout's
            # own settings (an AUTOCOMMIT session's) cannot be applied over.
            autocommit = dbapi_connection.autocommit
            dbapi_connection.autocommit = True
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
                dbapi_connection.autocommit = autocommit
        except Exception as e:
            # The pool discards this connection and checks out another (a new one if need be).
            raise DisconnectionError("idle connection failed its ping") from e


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: committed when the block ends, rolled back if it raises."""
    with factory() as session, session.begin():
        yield session

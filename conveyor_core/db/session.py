"""Engine and session factory, built once per process from the settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from conveyor_core.settings import Settings


def make_engine(settings: Settings, pool_size: int = 5) -> Engine:
    return create_engine(settings.sqlalchemy_url, pool_pre_ping=True, pool_size=pool_size)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: committed when the block ends, rolled back if it raises."""
    with factory() as session, session.begin():
        yield session

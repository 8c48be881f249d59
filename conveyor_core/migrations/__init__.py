"""Schema migrations (Alembic). Deploys run `upgrade_head`; nothing calls `create_all`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from conveyor_core.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["sqlalchemy_url"] = settings.sqlalchemy_url
    return config


def upgrade_head(settings: Settings) -> None:
    command.upgrade(alembic_config(settings), "head")

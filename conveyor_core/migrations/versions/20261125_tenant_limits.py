"""tenant limits: bytes, files, request rate

Revision ID: 20261125_limits
Revises: 20261125_events
Create Date: 2026-11-25 19:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261125_limits"
down_revision: str | None = "20261125_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tenant", sa.Column("max_bytes", sa.BigInteger(), nullable=True))
    op.add_column("tenant", sa.Column("max_files", sa.Integer(), nullable=True))
    op.add_column("tenant", sa.Column("rate_limit", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("tenant", "rate_limit")
    op.drop_column("tenant", "max_files")
    op.drop_column("tenant", "max_bytes")

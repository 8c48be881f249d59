"""upload part checksum: the algorithm a multipart upload's parts carry

Revision ID: 20261126_part_checksum
Revises: 20261126_key_notify
Create Date: 2026-11-26 06:30:00

Declared to the store when the upload is made; the API then signs only parts that carry it
and refuses others with a clear 400 rather than a store error on the part's PUT.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261126_part_checksum"
down_revision: str | None = "20261126_key_notify"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("upload", sa.Column("part_checksum", sa.String(length=16), nullable=True))


def downgrade() -> None:
    op.drop_column("upload", "part_checksum")

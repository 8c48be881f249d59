"""file idempotency key: a create request repeated with the same key answers the same upload

Revision ID: 20261126_idempotency_key
Revises: 20261126_part_checksum
Create Date: 2026-11-26 12:45:00

A client whose create answer was lost repeats the request with the same `Idempotency-Key`
and hears about the upload it already made, instead of making a second one that would wait
for bytes nobody sends.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261126_idempotency_key"
down_revision: str | None = "20261126_part_checksum"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("file", sa.Column("idempotency_key", sa.String(length=255), nullable=True))
    op.add_column("file", sa.Column("request_digest", sa.String(length=64), nullable=True))
    op.create_index(
        "uq_file_tenant_idempotency_key",
        "file",
        ["tenant_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_file_tenant_idempotency_key", table_name="file")
    op.drop_column("file", "request_digest")
    op.drop_column("file", "idempotency_key")

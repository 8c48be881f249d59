"""upload tokens: short-lived credentials for browsers

Revision ID: 20261204_upload_tokens
Revises: 20261204_random_sealed_key
Create Date: 2026-12-04 01:30:00

`upload_token`: minted by an app's backend with its API key (`POST /v1/upload-tokens`); it
may create uploads within its limits and read back the files it created. `file.upload_token_id`:
which token created the file.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261204_upload_tokens"
down_revision: str | None = "20261204_random_sealed_key"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "upload_token",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("tenant_id", sa.Uuid(), sa.ForeignKey("tenant.id"), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_file_size", sa.BigInteger(), nullable=True),
        sa.Column("max_files", sa.Integer(), nullable=True),
        sa.Column("content_types", postgresql.JSONB(), nullable=True),
        sa.Column("allow_public", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("files_created", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_upload_token_tenant_id", "upload_token", ["tenant_id"])
    op.add_column(
        "file",
        sa.Column("upload_token_id", sa.Uuid(), sa.ForeignKey("upload_token.id"), nullable=True),
    )
    op.create_index("ix_file_upload_token_id", "file", ["upload_token_id"])


def downgrade() -> None:
    op.drop_index("ix_file_upload_token_id", table_name="file")
    op.drop_column("file", "upload_token_id")
    op.drop_index("ix_upload_token_tenant_id", table_name="upload_token")
    op.drop_table("upload_token")

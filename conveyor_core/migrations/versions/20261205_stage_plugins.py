"""stages as plugins: a blob's metadata, and text from more than one stage

Revision ID: 20261205_stage_plugins
Revises: 20261204_upload_tokens
Create Date: 2026-12-05 10:00:00

`blob.properties`: what the stages found out about the bytes (dimensions, pages, duration,
...), shown as the file's `metadata`. `blob_text.source`: the stage that wrote the text (OCR
and a document's own text are kept apart, and both are searched); rows from before are OCR's.
`tenant.scan_oversize`: the tenant's own choice for files larger than the scanner takes
(null: the deployment's). `blob_text.search_vector` reads names in the text by their words
(`report.pdf`: report, pdf), as file names are searched.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20261205_stage_plugins"
down_revision: str | None = "20261204_upload_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "blob",
        sa.Column(
            "properties",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
    )
    op.add_column(
        "blob_text",
        sa.Column("source", sa.String(length=64), server_default="ocr", nullable=False),
    )
    op.drop_constraint("pk_blob_text", "blob_text", type_="primary")
    op.create_primary_key("pk_blob_text", "blob_text", ["sha256", "source"])
    op.add_column("tenant", sa.Column("scan_oversize", sa.String(length=32), nullable=True))
    _search_vector("to_tsvector('english', regexp_replace(text, '[/._]+', ' ', 'g'))")


def _search_vector(expression: str) -> None:
    """blob_text.search_vector computed anew (Postgres cannot alter a generated column)."""
    op.drop_index("ix_blob_text_search_vector", table_name="blob_text")
    op.drop_column("blob_text", "search_vector")
    op.add_column(
        "blob_text",
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(expression, persisted=True),
            nullable=False,
        ),
    )
    op.create_index(
        "ix_blob_text_search_vector", "blob_text", ["search_vector"], postgresql_using="gin"
    )


def downgrade() -> None:
    _search_vector("to_tsvector('english', text)")
    op.drop_column("tenant", "scan_oversize")
    op.execute("DELETE FROM blob_text WHERE source <> 'ocr'")
    op.drop_constraint("pk_blob_text", "blob_text", type_="primary")
    op.create_primary_key("pk_blob_text", "blob_text", ["sha256"])
    op.drop_column("blob_text", "source")
    op.drop_column("blob", "properties")

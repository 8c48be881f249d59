"""sealed blobs: an upload's bytes move out of every client's reach when they land

Revision ID: 20261203_sealed_blobs
Revises: 20261126_idempotency_key
Create Date: 2026-12-03 21:00:00

`upload.sealed_at`: when the workflow moved the upload's object from its `incoming/` key
(which pre-signed URLs name) to its `sealed/` key (which none can): from then on anything
that lands under the incoming key is a stray, deleted on sight. `blob.etag`: the ETag of the
object verify hashed, so copies of it are made only of those bytes. `blob.releasing_at`:
when the release of a blob's bytes began; a release that did not finish is taken up again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261203_sealed_blobs"
down_revision: str | None = "20261126_idempotency_key"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("upload", sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("blob", sa.Column("etag", sa.String(length=128), nullable=True))
    op.add_column("blob", sa.Column("releasing_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_blob_status", "blob", ["status"])
    # The sweeper and the relay ask whether a key is a blob's (blobs from before sealing).
    op.create_index("ix_blob_object_key", "blob", ["object_key"])


def downgrade() -> None:
    op.drop_index("ix_blob_object_key", table_name="blob")
    op.drop_index("ix_blob_status", table_name="blob")
    op.drop_column("blob", "releasing_at")
    op.drop_column("blob", "etag")
    op.drop_column("upload", "sealed_at")

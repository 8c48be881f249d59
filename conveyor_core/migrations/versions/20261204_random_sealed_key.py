"""random sealed keys: where an upload's bytes are sealed says nothing of whose they are

Revision ID: 20261204_random_sealed_key
Revises: 20261203_webhook_in_flight
Create Date: 2026-12-04 01:00:00

`upload.sealed_key`: the random, server-only key the workflow moves the landed object to.
It was `sealed/<tenant>/<upload>`, which put the first uploader's tenant id in the download
URL of every other tenant's duplicate of the same bytes. Uploads made before keep a null
here; their workflows still carry the old key.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261204_random_sealed_key"
down_revision: str | None = "20261203_webhook_in_flight"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("upload", sa.Column("sealed_key", sa.String(length=1024), nullable=True))


def downgrade() -> None:
    op.drop_column("upload", "sealed_key")

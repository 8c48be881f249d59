"""webhook in flight: each tenant's delivery attempts under way, with a lease

Revision ID: 20261203_webhook_in_flight
Revises: 20261203_sealed_blobs
Create Date: 2026-12-03 10:00:00

One tenant's slow receivers must not take every delivery slot: an attempt holds a row here
while it runs, and a tenant may hold only so many at once (across every worker process).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261203_webhook_in_flight"
down_revision: str | None = "20261203_sealed_blobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_in_flight",
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_delivery.id"],
            name=op.f("fk_webhook_in_flight_delivery_id_webhook_delivery"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("delivery_id", name=op.f("pk_webhook_in_flight")),
    )
    op.create_index(
        op.f("ix_webhook_in_flight_tenant_id"), "webhook_in_flight", ["tenant_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_in_flight_tenant_id"), table_name="webhook_in_flight")
    op.drop_table("webhook_in_flight")

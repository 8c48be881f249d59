"""key changes notify: a NOTIFY on conveyor_keys whenever a key or a tenant changes

Revision ID: 20261126_key_notify
Revises: 20261125_webhooks
Create Date: 2026-11-26 04:30:00

The API keeps the tenancy of valid keys in memory and drops it on this notification, so a
revoked key (or a changed limit) takes effect at once, whatever made the change: the CLI,
an operator's SQL, a future admin API.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261126_key_notify"
down_revision: str | None = "20261125_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "conveyor_keys"


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION conveyor_notify_key_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
            RETURN NULL;
        END;
        $$
        """
    )
    for table in ("api_key", "tenant"):
        op.execute(
            f"CREATE TRIGGER {table}_changed AFTER UPDATE OR DELETE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION conveyor_notify_key_change()"
        )


def downgrade() -> None:
    for table in ("api_key", "tenant"):
        op.execute(f"DROP TRIGGER {table}_changed ON {table}")
    op.execute("DROP FUNCTION conveyor_notify_key_change()")

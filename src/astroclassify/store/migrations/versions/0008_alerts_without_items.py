"""Alerts about no archive item (the learning loop's decisions), delivered at least once like the others.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.alter_column("item_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("key", sa.String(160), nullable=True))
        batch.create_unique_constraint("uq_alerts_key", ["key"])


def downgrade() -> None:
    op.execute("DELETE FROM alert_deliveries WHERE alert_id IN (SELECT id FROM alerts WHERE item_id IS NULL)")
    op.execute("DELETE FROM alerts WHERE item_id IS NULL")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_constraint("uq_alerts_key", type_="unique")
        batch.drop_column("key")
        batch.alter_column("item_id", existing_type=sa.Integer(), nullable=False)

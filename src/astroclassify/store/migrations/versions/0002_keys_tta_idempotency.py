"""Reusable names of revoked API keys, the TTA mode of each answer, idempotency keys.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ACTIVE = sa.text("revoked_at IS NULL")


def _api_keys(unique_name: bool) -> sa.Table:
    return sa.Table(
        "api_keys",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=64), nullable=False, unique=unique_name),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )


def upgrade() -> None:
    # SQLite cannot drop the unnamed UNIQUE(name) constraint: rebuild the table without it,
    # then make names unique among keys in use only.
    with op.batch_alter_table("api_keys", copy_from=_api_keys(unique_name=False), recreate="always"):
        pass
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"])  # a rebuilt table has no indexes
    op.create_index(
        "ux_api_keys_active_name", "api_keys", ["name"], unique=True, sqlite_where=ACTIVE, postgresql_where=ACTIVE
    )
    with op.batch_alter_table("classifications") as batch:
        batch.add_column(sa.Column("tta", sa.String(length=16), nullable=True))
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("classification_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["classification_id"], ["classifications.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner", "key"),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    with op.batch_alter_table("classifications") as batch:
        batch.drop_column("tta")
    op.drop_index("ux_api_keys_active_name", "api_keys")
    with op.batch_alter_table("api_keys", copy_from=_api_keys(unique_name=True), recreate="always"):
        pass
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"])

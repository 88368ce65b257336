"""An index on ingested_items.classification_id.

Discovery joins every stored embedding to the archive item it came from (its source); without
this index SQLite scanned ingested_items once per embedding (100k x 10k rows).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ingested_items_classification_id", "ingested_items", ["classification_id"])


def downgrade() -> None:
    op.drop_index("ix_ingested_items_classification_id", "ingested_items")

"""Anomaly scores on classifications; stored embeddings; people's marks.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("classifications") as batch:
        batch.add_column(sa.Column("anomaly_score", sa.Float(), nullable=True))
        batch.add_column(sa.Column("unusual", sa.Boolean(), nullable=True))
    op.create_index("ix_classifications_anomaly_score", "classifications", ["anomaly_score"])
    op.create_table(
        "embeddings",
        sa.Column("classification_id", sa.Integer(), nullable=False),
        sa.Column("detector", sa.String(length=32), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["classification_id"], ["classifications.id"]),
        sa.PrimaryKeyConstraint("classification_id"),
    )
    op.create_index("ix_embeddings_detector", "embeddings", ["detector"])
    op.create_table(
        "marks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("classification_id", sa.Integer(), nullable=False),
        sa.Column("interesting", sa.Boolean(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["classification_id"], ["classifications.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_marks_classification_id", "marks", ["classification_id"])


def downgrade() -> None:
    op.drop_table("marks")
    op.drop_table("embeddings")
    op.drop_index("ix_classifications_anomaly_score", "classifications")
    with op.batch_alter_table("classifications") as batch:
        batch.drop_column("unusual")
        batch.drop_column("anomaly_score")

"""Contributions (labels shared between installations), peers, and installation properties.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contributions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uid", sa.String(96), nullable=False, unique=True),
        sa.Column("origin", sa.String(64), nullable=False, index=True),
        sa.Column("contributor", sa.String(128), nullable=False, index=True),
        sa.Column("question", sa.String(64), nullable=False),
        sa.Column("answer", sa.String(64), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False, index=True),
        sa.Column("pixels_sha256", sa.String(64), nullable=False),
        sa.Column("stored_name", sa.String(64), nullable=False),
        sa.Column("image_format", sa.String(16), nullable=False),
        sa.Column("licence", sa.String(255), nullable=False),
        sa.Column("credit", sa.Text(), nullable=False),
        sa.Column("made_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("via", sa.String(255), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_contributions_image_contributor", "contributions", ["pixels_sha256", "contributor"])
    op.create_table(
        "peers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("url", sa.String(255), nullable=False, unique=True),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
    )
    op.create_table(
        "properties",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("properties")
    op.drop_table("peers")
    op.drop_index("ix_contributions_image_contributor", table_name="contributions")
    op.drop_table("contributions")

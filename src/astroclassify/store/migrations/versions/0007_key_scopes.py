"""API keys get a scope (client or peer) and a sharing choice; labels published without that choice are withdrawn.

Before 0007 every correction was published to peers, a key holder's included, and any key
could read them. From here a key holder's corrections are shared only if their key says so,
so the ones published before are taken back (the web collection without keys stays shared).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("scope", sa.String(16), nullable=False, server_default="client"))
        batch.add_column(sa.Column("share", sa.Boolean(), nullable=False, server_default=sa.text("0")))
    op.execute("DELETE FROM contributions WHERE via = 'local' AND contributor NOT LIKE '%/web'")


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("share")
        batch.drop_column("scope")

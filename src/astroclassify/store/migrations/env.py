"""Alembic environment: migrations run on the connection ``store.db.upgrade_database`` hands in.

There is no alembic.ini: the project runs its migrations itself at start-up. To write a new
one (developers), see docs/architecture.md ("Schema migrations").
"""

from alembic import context

from astroclassify.store.tables import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters most things by rebuilding the table
)
with context.begin_transaction():
    context.run_migrations()

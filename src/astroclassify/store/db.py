"""Engine and sessions for any SQLAlchemy URL; the schema is migrated to the current one on open.

SQLite gets WAL and a busy timeout: WAL lets readers (the gallery) run while a writer
commits, and the busy timeout makes concurrent writers wait instead of failing with
"database is locked".

Schema changes are Alembic migrations (``store/migrations``), applied when a database is
opened, so a database made by an earlier release upgrades in place. A database made by
0.1.0 (before migrations) is recognised by its tables and stamped as revision 0001 first.
Processes that start together take a file lock around the upgrade, so two servers never
race to create the same table.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

__all__ = ["SCHEMA_REVISION", "make_engine", "make_sessionmaker", "upgrade_database"]

log = logging.getLogger(__name__)

# The newest migration in store/migrations/versions (a test checks they agree). A database
# already at this revision is opened without loading Alembic at all.
SCHEMA_REVISION = "0003"
MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str, *, migrate: bool = True) -> Engine:
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:") or "mode=memory" in url
        extra = {"poolclass": StaticPool} if memory else {}  # one connection, or each gets an empty database
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **extra)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    if migrate:
        upgrade_database(engine)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def upgrade_database(engine: Engine) -> str:
    """Bring the schema to ``SCHEMA_REVISION``; returns the revision it was at before."""
    before = _revision(engine)
    if before == SCHEMA_REVISION:
        return before
    with _migration_lock(engine):
        before = _revision(engine)  # another process may have finished while we waited
        if before == SCHEMA_REVISION:
            return before
        from alembic import command
        from alembic.config import Config

        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            if before is None and "classifications" in inspect(connection).get_table_names():
                command.stamp(config, "0001")  # made by 0.1.0 with create_all
                before = "0001"
            command.upgrade(config, "head")
        log.info("database schema upgraded from %s to %s", before or "empty", SCHEMA_REVISION)
    return before or ""


def _revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if "alembic_version" not in inspect(connection).get_table_names():
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _migration_lock(engine: Engine):
    """A lock file beside a SQLite database file; server databases rely on transactional DDL."""
    database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:" or engine.url.query.get("mode") == "memory":
        return nullcontext()
    from filelock import FileLock

    return FileLock(f"{database}.migrate-lock", timeout=300)

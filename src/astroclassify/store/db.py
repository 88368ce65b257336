"""Engine and sessions for any SQLAlchemy URL; the schema is migrated to the current one on open.

SQLite gets WAL and a busy timeout: WAL lets readers (the gallery) run while a writer
commits, and the busy timeout makes concurrent writers wait instead of failing with
"database is locked".

Schema changes are Alembic migrations (``store/migrations``), applied when a database is
opened, so a database made by an earlier release upgrades in place. A database made by
0.1.0 (before migrations) is recognised by its tables and stamped as revision 0001 first.
Processes that start together take a file lock around the upgrade, so two servers never
race to create the same table.

Writers to one SQLite file queue on a lock of their own (:class:`WriteLock`), taken at a
session's first write and released when its transaction ends. SQLite's busy timeout would
make them wait too, but it waits by sleeping 1, 2, 5 ... 100 ms and retrying: with two
server processes committing 150 times a second those sleeps were most of the p99 latency
(bench/serve_latency.py). This lock is retried every 0.2 ms (a commit takes well under a
millisecond) and costs about 2 us uncontended.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import nullcontext
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import OperationalError

try:
    import fcntl
except ImportError:  # Windows: writers in other processes fall back to SQLite's busy timeout
    fcntl = None  # type: ignore[assignment]
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from astroclassify.errors import StoreError

__all__ = ["SCHEMA_REVISION", "WriteLock", "make_engine", "make_sessionmaker", "upgrade_database"]

log = logging.getLogger(__name__)

# The newest migration in store/migrations/versions (a test checks they agree). A database
# already at this revision is opened without loading Alembic at all.
SCHEMA_REVISION = "0008"
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
    maker = sessionmaker(engine, expire_on_commit=False)
    database = _sqlite_file(engine)
    if database:
        lock = WriteLock.for_database(database)

        # Taken at a session's first write (a flush or an ORM insert/update/delete), held until
        # its transaction ends: the span in which SQLite holds its own write lock.
        def _take(session: Session) -> None:
            if not session.info.get("write_lock"):
                lock.acquire()
                session.info["write_lock"] = True

        @event.listens_for(maker, "before_flush")
        def _before_flush(session, _context, _instances) -> None:
            _take(session)

        @event.listens_for(maker, "do_orm_execute")
        def _before_dml(state) -> None:
            if state.is_insert or state.is_update or state.is_delete:
                _take(state.session)

        @event.listens_for(maker, "after_transaction_end")
        def _release(session, transaction) -> None:
            if transaction.parent is None and session.info.pop("write_lock", False):
                lock.release()

    return maker


class WriteLock:
    """One writer at a time to a SQLite file: a thread lock in this process, ``flock`` across processes."""

    _registry: dict[str, WriteLock] = {}
    _registry_lock = threading.Lock()

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._thread_lock = threading.Lock()
        self._fd: int | None = None

    @classmethod
    def for_database(cls, database: str) -> WriteLock:
        key = os.path.abspath(database)
        with cls._registry_lock:
            return cls._registry.setdefault(key, cls(f"{key}.write-lock"))

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        if not self._thread_lock.acquire(timeout=self.timeout):
            raise OperationalError("write lock", None, Exception(f"database busy for {self.timeout:.0f} s"))
        if fcntl is None:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            while True:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise OperationalError(
                            "write lock", None, Exception(f"database busy for {self.timeout:.0f} s")
                        ) from None
                    time.sleep(0.0002)  # another process commits in well under a millisecond
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self) -> None:
        if self._fd is not None and fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()


def _sqlite_file(engine: Engine) -> str | None:
    if engine.url.get_backend_name() != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or engine.url.query.get("mode") == "memory":
        return None
    return database


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

        with engine.connect() as connection:
            # SQLite alters a table by rebuilding it: a table that others reference (alerts, by
            # their deliveries) can be dropped only with foreign keys off, which SQLite honours only
            # outside a transaction; they are checked before the migration commits.
            sqlite = engine.dialect.name == "sqlite"
            if sqlite:
                connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
            try:
                with connection.begin():
                    config = Config()
                    config.set_main_option("script_location", str(MIGRATIONS))
                    config.attributes["connection"] = connection
                    if before is None and "classifications" in inspect(connection).get_table_names():
                        command.stamp(config, "0001")  # made by 0.1.0 with create_all
                        before = "0001"
                    command.upgrade(config, "head")
                    if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                        raise StoreError("the schema migration would break a foreign key; nothing was changed")
            finally:
                if sqlite:
                    connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]
        log.info("database schema upgraded from %s to %s", before or "empty", SCHEMA_REVISION)
    return before or ""


def _revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if "alembic_version" not in inspect(connection).get_table_names():
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _migration_lock(engine: Engine):
    """A lock file beside a SQLite database file; server databases rely on transactional DDL."""
    database = _sqlite_file(engine)
    if not database:
        return nullcontext()
    from filelock import FileLock

    return FileLock(f"{database}.migrate-lock", timeout=300)

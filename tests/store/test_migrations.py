"""Schema migrations: a database made by release 0.1.0 upgrades in place; processes never race."""

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from astroclassify.store.api_keys import ApiKeys
from astroclassify.store.classifications import Classifications
from astroclassify.store.db import MIGRATIONS, SCHEMA_REVISION, make_engine, make_sessionmaker
from astroclassify.store.tables import Base

# Made with the 0.1.0 release's own code (create_all, no migrations): two classifications, a
# correction, an active and a revoked key, an ingested APOD day, a run and an alert.
RELEASE_0_1_0 = Path(__file__).with_name("fixtures") / "v0.1.0.sqlite"


def _schema_matches_tables(engine) -> list:
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def test_schema_revision_is_the_newest_migration():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION


def test_a_0_1_0_database_upgrades_in_place(tmp_path):
    path = tmp_path / "astroclassify.db"
    shutil.copyfile(RELEASE_0_1_0, path)
    engine = make_engine(f"sqlite:///{path}")
    assert _schema_matches_tables(engine) == []
    with make_sessionmaker(engine)() as session:
        rows, total = Classifications(session).search(_query())
        assert total == 2 and {r.label for r in rows} == {"galaxy", "nebula"}
        assert [f.label for f in Classifications(session).get(1).feedback] == ["nebula"]
        keys = ApiKeys(session)
        assert [(k.name, k.revoked_at is None) for k in keys.all()] == [("alice", True), ("bob", False)]
        keys.create("bob")  # a revoked key's name is free again after the upgrade
    engine.dispose()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(SCHEMA_REVISION,)]
        assert db.execute("SELECT count(*) FROM ingested_items").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM alerts").fetchone() == (1,)


def _query():
    from astroclassify.store.classifications import ClassificationQuery

    return ClassificationQuery()


def test_a_new_database_is_made_by_the_migrations(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    assert _schema_matches_tables(engine) == []
    assert _schema_matches_tables(make_engine("sqlite://")) == []


def test_servers_starting_together_never_race_to_create_tables(tmp_path):
    path = tmp_path / "shared.db"
    code = f"from astroclassify.store.db import make_engine; make_engine('sqlite:///{path}')"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(6)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(SCHEMA_REVISION,)]

"""An installation's store: its database (migrated to the current schema on open) and its image files."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["Store", "open_store"]


@dataclass(eq=False)  # a handle: equal only to itself (and hashable, so caches can key on it)
class Store:
    """A database and its image files; a context manager that disposes of the engine."""

    engine: Engine
    sessions: sessionmaker[Session]
    images: Path  # uploads and ingested images, under generated names
    home: Path

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(home: Path, database_url: str | None = None) -> Store:
    """Open an installation's store, upgrading its database schema in place if needed.

    Parameters
    ----------
    home : Path
        The installation folder (images under ``home/uploads``).
    database_url : str, optional
        Any SQLAlchemy URL; default: ``sqlite:///home/astroclassify.db``.

    Returns
    -------
    Store
        ``session()``, ``images``, ``close()``; a context manager.
    """
    from astroclassify.store.db import make_engine, make_sessionmaker

    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(database_url or f"sqlite:///{home / 'astroclassify.db'}")
    return Store(engine, make_sessionmaker(engine), home / "uploads", home)

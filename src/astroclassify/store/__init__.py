"""SQLAlchemy tables and repositories: the only package that speaks SQL.

``open_store(home)`` is one installation's handle: its database (migrated to the current
schema on open) and the folder that holds its image files. Code outside this package names
sessions and database errors through the aliases below, never through SQLAlchemy itself.
"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError as DatabaseError
from sqlalchemy.orm import Session

from astroclassify.store.handle import Store, open_store

__all__ = ["DatabaseError", "Session", "Store", "open_store"]

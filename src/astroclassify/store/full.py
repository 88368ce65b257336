"""Recognising a full disk, whichever layer noticed it: the file system or the database.

A full disk is the operator's problem, not a bug: the web app answers 507 and says so, and
the CLI prints one line, instead of a traceback about ENOSPC from deep inside a write.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from astroclassify.errors import StoreFullError

__all__ = ["FULL_MESSAGE", "is_storage_full"]

FULL_MESSAGE = (
    "the store is full (no space or quota left on its disk); nothing was stored, try again once space is freed"
)
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full"
_SQLITE_IOERR = 10  # what SQLite says when the journal or WAL cannot grow on a full disk
_NEARLY_FULL = 1024 * 1024


def is_storage_full(exc: BaseException | None, folder: Path | None = None) -> bool:
    """True when ``exc``, or an error it was raised from, says the disk or quota is full.

    SQLite often reports a full disk as a plain "disk I/O error" (its journal could not grow);
    given the store's ``folder``, such an error counts as full when that disk has under 1 MiB free.
    """
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, StoreFullError):
            return True
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF == _SQLITE_FULL:
            return True
        io_error = (code is not None and code & 0xFF == _SQLITE_IOERR) or "disk I/O error" in str(exc)
        if io_error and folder is not None and _free_bytes(folder) < _NEARLY_FULL:
            return True
        if "database or disk is full" in str(exc):  # other DB-API drivers, wrapped by SQLAlchemy
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
        seen += 1
    return False


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return _NEARLY_FULL  # unknown: not taken as full

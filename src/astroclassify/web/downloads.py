"""A dataset folder written by an export function, sent as a zip and removed afterwards."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from fastapi import BackgroundTasks
from fastapi.responses import FileResponse

__all__ = ["dataset_zip"]


def dataset_zip(background: BackgroundTasks, name: str, write: Callable[[Path], int]) -> FileResponse:
    """``write(folder)`` fills ``name/`` and returns how many images; the reply carries ``X-Images``."""
    tmp = Path(tempfile.mkdtemp(prefix=f"astroclassify-{name}-"))
    background.add_task(shutil.rmtree, tmp, True)
    n = write(tmp / name)
    archive = shutil.make_archive(str(tmp / name), "zip", tmp, name)
    return FileResponse(archive, media_type="application/zip", filename=f"{name}.zip", headers={"X-Images": str(n)})

"""The image store: uploads kept under generated names, written atomically."""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from astroclassify.errors import RecordNotFoundError, StoreFullError
from astroclassify.store.full import FULL_MESSAGE, is_storage_full

__all__ = [
    "EXTENSIONS",
    "MEDIA_TYPES",
    "STORED_NAME",
    "derived_image",
    "existing_file",
    "save_image",
    "stored_path",
    "sweep_orphans",
]

log = logging.getLogger(__name__)

STORED_NAME = re.compile(r"^[0-9a-f]{32}\.[a-z]{2,4}$")

EXTENSIONS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "TIFF": "tif",
    "WEBP": "webp",
    "BMP": "bmp",
    "GIF": "gif",
    "FITS": "fits",
}
MEDIA_TYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "tif": "image/tiff",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "gif": "image/gif",
    "fits": "application/fits",
}


def save_image(data: bytes, image_format: str, root: Path) -> str:
    """Write ``data`` under a fresh random name; returns that name (never the user's)."""
    name = f"{uuid.uuid4().hex}.{EXTENSIONS.get(image_format, 'bin')}"
    _write_atomic(root / name, lambda fh: fh.write(data), durable=True)
    return name


def stored_path(root: Path, name: str) -> Path:
    """The file of a stored upload; refuses names this store never generates."""
    if not STORED_NAME.match(name):
        raise RecordNotFoundError(f"no stored image named {name!r}")
    return root / name


def existing_file(root: Path, name: str, what: str) -> Path:
    """The stored file, or RecordNotFoundError naming ``what`` (never the server's own path)."""
    path = stored_path(root, name)
    if not path.is_file():
        raise RecordNotFoundError(f"the image file of {what} is no longer in the store")
    return path


def sweep_orphans(root: Path, referenced: set[str], *, older_than: float = 600.0) -> list[str]:
    """Delete store files no record refers to: an upload saved just before a crash, never committed.

    Only files older than ``older_than`` seconds go, so a request that has saved its file and
    is about to commit its record (in this or another server process) keeps it.
    """
    if not root.is_dir():
        return []
    cutoff = time.time() - older_than
    removed = []
    for path in root.iterdir():
        if not path.is_file() or not (STORED_NAME.match(path.name) or path.name.startswith(".tmp-")):
            continue
        if path.name in referenced:
            continue
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path.name)
        except FileNotFoundError:
            continue
    if removed:
        log.info("removed %d file(s) from %s that no record refers to", len(removed), root)
    return removed


def derived_image(path: Path, render: Callable[[], Image.Image], image_format: str, **save_options) -> Path:
    """``path``, rendering it first if it is not there yet (thumbnails, explanations).

    Concurrent requests may both render; each writes its own temporary file and the
    atomic rename lets the last one win, so no reader sees a partial image.
    """
    if not path.is_file():
        image = render()
        _write_atomic(path, lambda fh: image.save(fh, format=image_format, **save_options), durable=False)
    return path


def _write_atomic(path: Path, write: Callable[[BinaryIO], object], *, durable: bool) -> None:
    """Write through a temporary file and rename: a full disk leaves nothing behind (StoreFullError)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    except OSError as exc:
        if is_storage_full(exc):
            raise StoreFullError(FULL_MESSAGE) from None
        raise
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            if durable:  # uploads are the only copy; derived images can be rebuilt
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)  # readers never see a half-written file
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if is_storage_full(exc):
            raise StoreFullError(FULL_MESSAGE) from None
        raise

"""The image store: uploads kept under generated names, written atomically."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

__all__ = ["EXTENSIONS", "save_image"]

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif", "WEBP": "webp", "BMP": "bmp", "GIF": "gif", "FITS": "fits"}


def save_image(data: bytes, image_format: str, root: Path) -> str:
    """Write ``data`` under a fresh random name; returns that name (never the user's)."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.{EXTENSIONS.get(image_format, 'bin')}"
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, root / name)  # readers never see a half-written file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return name

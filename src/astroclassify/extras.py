"""Optional parts of the package: which extra brings which library, and one line when one is missing.

The core (``load``, ``predict``, ``explain``) needs NumPy, Pillow, ONNX Runtime, astropy and
pydantic-settings; everything else is an extra of ``pyproject.toml``. A missing library
surfaces as ``MissingExtraError`` naming the extra to install, never as a traceback.
"""

from __future__ import annotations

from astroclassify.errors import MissingExtraError

__all__ = ["EXTRA_OF", "missing_extra"]

# Top-level import name -> the extra that installs it.
EXTRA_OF = {
    "sqlalchemy": "store",
    "alembic": "store",
    "filelock": "store",
    "typer": "cli",
    "rich": "cli",
    "yaml": "cli",
    "httpx": "ingest",
    "bs4": "ingest",
    "fastapi": "web",
    "starlette": "web",
    "uvicorn": "web",
    "jinja2": "web",
    "multipart": "web",
    "fastapi_offline": "web",
    "dask": "batch",
    "distributed": "batch",
    "pyarrow": "batch",
    "fsspec": "batch",
    "sklearn": "evaluate",
    "scipy": "evaluate",
    "hnswlib": "discovery",
    "matplotlib": "evaluate",
    "torch": "train",
    "onnx": "train",
    "onnxscript": "train",
    "albumentations": "train",
    "skimage": "train",
    "efficientnet_lite_pytorch": "train",
}


def missing_extra(exc: ImportError) -> MissingExtraError | None:
    """The one-line error for an import that failed because an extra is not installed, else None."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    extra = EXTRA_OF.get(name)
    if extra is None:
        return None
    return MissingExtraError(
        f"this needs {name}, from the '{extra}' extra: pip install 'astroclassify[{extra}]' "
        "(or 'astroclassify[all]' for everything)"
    )

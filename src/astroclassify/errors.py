"""Exceptions and warnings raised by astroclassify.

Every error says what was expected, what was got, and what to do; the CLI prints
``str(error)`` on one line and exits non-zero, so messages must stand alone.

::

    AstroClassifyError
    ├── ConfigError          (also ValueError)
    ├── MissingExtraError    (also ImportError: an optional part is not installed)
    ├── IngestError
    │   └── PeerError        (another installation refused, hung or sent what we refuse)
    ├── DataError            (also ValueError)
    │   └── ImageDecodeError
    │       └── FileTooLargeError
    ├── ModelError
    │   ├── UnknownNameError (also KeyError)
    │   └── NotFittedError   (also AttributeError)
    └── StoreError
        ├── RecordNotFoundError (also LookupError)
        ├── IdempotencyKeyReusedError
        └── StoreFullError      (no space or quota left: HTTP 507)

    AstroClassifyWarning (UserWarning)
"""

from __future__ import annotations

__all__ = [
    "EXTRA_OF",
    "AstroClassifyError",
    "AstroClassifyWarning",
    "ConfigError",
    "DataError",
    "FileTooLargeError",
    "IdempotencyKeyReusedError",
    "ImageDecodeError",
    "IngestError",
    "MissingExtraError",
    "ModelError",
    "NoEmbeddingError",
    "NotFittedError",
    "PeerError",
    "RecordNotFoundError",
    "StoreError",
    "StoreFullError",
    "UnknownNameError",
    "missing_extra",
]


class AstroClassifyError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(AstroClassifyError, ValueError):
    """A setting or option has a value that cannot be used."""


class MissingExtraError(AstroClassifyError, ImportError):
    """What was asked for needs an optional part of the package that is not installed."""


class IngestError(AstroClassifyError):
    """Fetching or importing a collection failed."""


class PeerError(IngestError):
    """A sync with another installation stopped: it refused us, hung, or answered what we cannot trust."""


class DataError(AstroClassifyError, ValueError):
    """A dataset, manifest or split is malformed."""


class ImageDecodeError(DataError):
    """A file is not an image we can decode safely (corrupt, truncated, too large, not an image)."""


class FileTooLargeError(ImageDecodeError):
    """A file or upload is over the byte-size limit (HTTP 413); pixel-count refusals are plain decode errors."""


class ModelError(AstroClassifyError):
    """A model cannot be built, loaded or used."""


class UnknownNameError(ModelError, KeyError):
    """A registry lookup failed; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NoEmbeddingError(ModelError):
    """A model has no anomaly detector, or a record no stored embedding, to compare with (HTTP 409)."""


class NotFittedError(ModelError, AttributeError):
    """A Classifier was used before ``fit`` or ``load``."""


class StoreError(AstroClassifyError):
    """The database or image store failed."""


class AstroClassifyWarning(UserWarning):
    """Base class of the warnings this package emits."""


class RecordNotFoundError(StoreError, LookupError):
    """A stored record or API key does not exist (or is not visible to the caller): HTTP 404."""


class IdempotencyKeyReusedError(StoreError):
    """An ``Idempotency-Key`` came back with a different upload than the one it first named (HTTP 422)."""


class StoreFullError(StoreError):
    """The disk (or quota) holding the store is full; nothing was stored (HTTP 507)."""


# -- optional parts of the package ------------------------------------------------------------
# The core (``load``, ``predict``, ``explain``) needs NumPy, Pillow, ONNX Runtime, astropy and
# pydantic-settings; everything else is an extra of ``pyproject.toml``. A missing library
# surfaces as ``MissingExtraError`` naming the extra to install, never as a traceback.
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
    "h5py": "train",
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

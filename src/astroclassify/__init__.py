"""astroclassify: classify astronomical images, from data to calibrated ONNX predictions."""

from astroclassify._version import __version__
from astroclassify.classifier import Classifier, Prediction, load
from astroclassify.errors import (
    AstroClassifyError,
    AstroClassifyWarning,
    ConfigError,
    DataError,
    FileTooLargeError,
    ImageDecodeError,
    IngestError,
    ModelError,
    NotFittedError,
    RecordNotFoundError,
    StoreError,
    UnknownNameError,
)


def create_model(name: str, pretrained: bool = False, **kwargs):
    """Build a registered architecture (needs the ``train`` extra: torch)."""
    from astroclassify.models import create_model as _create

    return _create(name, pretrained=pretrained, **kwargs)


def list_models(pattern: str = "*") -> list[str]:
    """Registered architecture names (needs the ``train`` extra: torch)."""
    from astroclassify.models import list_models as _list

    return _list(pattern)


__all__ = [
    "AstroClassifyError",
    "AstroClassifyWarning",
    "Classifier",
    "ConfigError",
    "DataError",
    "FileTooLargeError",
    "ImageDecodeError",
    "IngestError",
    "ModelError",
    "NotFittedError",
    "RecordNotFoundError",
    "Prediction",
    "StoreError",
    "UnknownNameError",
    "__version__",
    "create_model",
    "list_models",
    "load",
]

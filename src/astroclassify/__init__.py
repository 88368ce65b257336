"""astroclassify: classify astronomical images, from data to calibrated ONNX predictions.

The public API, one call per task (docs/api.md has runnable examples):

- models: ``load``, ``Classifier``, ``list_models``, ``create_model``, ``list_architectures``;
- training: ``TrainConfig``, ``train``, ``cross_validate``;
- scoring: ``evaluate``, ``build_ensemble``;
- data: ``datasets.load / check / split / fetch``;
- archives: ``open_store``, ``ingest``, ``watch``, ``export_dataset``, ``export_feedback``;
- scale: ``batch`` (Dask, Parquet out);
- discovery: ``fit_anomalies``, ``evaluate_anomalies``, ``simulate_marks``, ``similar_images``,
  ``mark_image``, ``anomaly_ranking``, ``anomaly_map``, ``export_marks``.

Names are re-exported lazily, so ``import astroclassify`` stays light (no torch, no
SQLAlchemy) until a training or archive function is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from astroclassify._version import __version__
from astroclassify.classifier import Classifier, Prediction, load
from astroclassify.errors import (
    AstroClassifyError,
    AstroClassifyWarning,
    ConfigError,
    DataError,
    FileTooLargeError,
    IdempotencyKeyReusedError,
    ImageDecodeError,
    IngestError,
    ModelError,
    NotFittedError,
    RecordNotFoundError,
    StoreError,
    UnknownNameError,
)

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and editors
    from astroclassify import datasets
    from astroclassify.batching.batch import BatchResult, batch
    from astroclassify.discovery.collection import (
        anomaly_map,
        anomaly_ranking,
        export_marks,
        mark_image,
        similar_images,
    )
    from astroclassify.discovery.detectors import Detector
    from astroclassify.discovery.evaluation import AnomalyEvaluation, Simulation, evaluate_anomalies, simulate_marks
    from astroclassify.discovery.fitting import AnomalyFit, fit_anomalies
    from astroclassify.evaluation.evaluate import Evaluation, evaluate
    from astroclassify.inference.predictor import Explanation
    from astroclassify.ingestion.run import IngestOptions, IngestResult, ingest
    from astroclassify.ingestion.sources import SourceOptions
    from astroclassify.ingestion.watch import watch
    from astroclassify.modelfolder.finish import refresh_model_card
    from astroclassify.modelfolder.folder import ModelEntry, model_versions, rollback_model, use_model_version
    from astroclassify.modelfolder.folder import available_models as list_models
    from astroclassify.models import create_model
    from astroclassify.models import list_models as list_architectures
    from astroclassify.store import Store, open_store
    from astroclassify.store.export import ExportResult, export_dataset, export_feedback
    from astroclassify.training.config import TrainConfig
    from astroclassify.training.ensemble import EnsembleResult, build_ensemble
    from astroclassify.training.train import CVResult, TrainResult, cross_validate, train

_LAZY = {
    "datasets": ("astroclassify.datasets", None),
    "BatchResult": ("astroclassify.batching.batch", "BatchResult"),
    "batch": ("astroclassify.batching.batch", "batch"),
    "AnomalyEvaluation": ("astroclassify.discovery.evaluation", "AnomalyEvaluation"),
    "AnomalyFit": ("astroclassify.discovery.fitting", "AnomalyFit"),
    "Simulation": ("astroclassify.discovery.evaluation", "Simulation"),
    "evaluate_anomalies": ("astroclassify.discovery.evaluation", "evaluate_anomalies"),
    "fit_anomalies": ("astroclassify.discovery.fitting", "fit_anomalies"),
    "simulate_marks": ("astroclassify.discovery.evaluation", "simulate_marks"),
    "Detector": ("astroclassify.discovery.detectors", "Detector"),
    "anomaly_map": ("astroclassify.discovery.collection", "anomaly_map"),
    "anomaly_ranking": ("astroclassify.discovery.collection", "anomaly_ranking"),
    "export_marks": ("astroclassify.discovery.collection", "export_marks"),
    "mark_image": ("astroclassify.discovery.collection", "mark_image"),
    "similar_images": ("astroclassify.discovery.collection", "similar_images"),
    "refresh_model_card": ("astroclassify.modelfolder.finish", "refresh_model_card"),
    "model_versions": ("astroclassify.modelfolder.folder", "model_versions"),
    "rollback_model": ("astroclassify.modelfolder.folder", "rollback_model"),
    "use_model_version": ("astroclassify.modelfolder.folder", "use_model_version"),
    "EnsembleResult": ("astroclassify.training.ensemble", "EnsembleResult"),
    "build_ensemble": ("astroclassify.training.ensemble", "build_ensemble"),
    "Evaluation": ("astroclassify.evaluation.evaluate", "Evaluation"),
    "evaluate": ("astroclassify.evaluation.evaluate", "evaluate"),
    "ModelEntry": ("astroclassify.modelfolder.folder", "ModelEntry"),
    "list_models": ("astroclassify.modelfolder.folder", "available_models"),
    "Explanation": ("astroclassify.inference.predictor", "Explanation"),
    "create_model": ("astroclassify.models", "create_model"),
    "list_architectures": ("astroclassify.models", "list_models"),
    "IngestOptions": ("astroclassify.ingestion.run", "IngestOptions"),
    "IngestResult": ("astroclassify.ingestion.run", "IngestResult"),
    "ingest": ("astroclassify.ingestion.run", "ingest"),
    "watch": ("astroclassify.ingestion.watch", "watch"),
    "SourceOptions": ("astroclassify.ingestion.sources", "SourceOptions"),
    "Store": ("astroclassify.store", "Store"),
    "open_store": ("astroclassify.store", "open_store"),
    "ExportResult": ("astroclassify.store.export", "ExportResult"),
    "export_dataset": ("astroclassify.store.export", "export_dataset"),
    "export_feedback": ("astroclassify.store.export", "export_feedback"),
    "TrainConfig": ("astroclassify.training.config", "TrainConfig"),
    "CVResult": ("astroclassify.training.train", "CVResult"),
    "TrainResult": ("astroclassify.training.train", "TrainResult"),
    "cross_validate": ("astroclassify.training.train", "cross_validate"),
    "train": ("astroclassify.training.train", "train"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'astroclassify' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    return value if attr is None else getattr(value, attr)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AnomalyEvaluation",
    "AnomalyFit",
    "AstroClassifyError",
    "AstroClassifyWarning",
    "BatchResult",
    "CVResult",
    "Classifier",
    "ConfigError",
    "DataError",
    "Detector",
    "EnsembleResult",
    "Evaluation",
    "Explanation",
    "ExportResult",
    "FileTooLargeError",
    "IdempotencyKeyReusedError",
    "ImageDecodeError",
    "IngestError",
    "IngestOptions",
    "IngestResult",
    "ModelEntry",
    "ModelError",
    "NotFittedError",
    "Prediction",
    "RecordNotFoundError",
    "Simulation",
    "SourceOptions",
    "Store",
    "StoreError",
    "TrainConfig",
    "TrainResult",
    "UnknownNameError",
    "anomaly_map",
    "anomaly_ranking",
    "batch",
    "build_ensemble",
    "create_model",
    "cross_validate",
    "datasets",
    "evaluate",
    "evaluate_anomalies",
    "export_dataset",
    "export_feedback",
    "export_marks",
    "fit_anomalies",
    "ingest",
    "list_architectures",
    "list_models",
    "load",
    "mark_image",
    "model_versions",
    "open_store",
    "refresh_model_card",
    "rollback_model",
    "similar_images",
    "simulate_marks",
    "train",
    "use_model_version",
    "watch",
    "__version__",
]

"""A predictor's outcome as the store keeps it (uploads and ingestion make records alike)."""

from __future__ import annotations

import numpy as np

from astroclassify.inference.predictor import OnnxPredictor, Outcome
from astroclassify.store.classifications import Answer

__all__ = ["answer_of"]


def answer_of(predictor: OnnxPredictor, outcome: Outcome, tta: str | None) -> Answer:
    """``Answer`` for one outcome: probabilities, model, TTA, and the anomaly score and embedding if any."""
    assert outcome.probabilities is not None
    b = predictor.bundle
    detector = predictor.detector
    embedding = outcome.embedding
    return Answer(
        predictor.labels,
        outcome.probabilities.tolist(),
        b.name,
        b.version,
        tta,
        anomaly_score=outcome.anomaly_score,
        unusual=outcome.unusual,
        embedding=embedding.astype(np.float16).tobytes() if embedding is not None else None,
        detector=detector.meta.get("id") if detector is not None else None,
        tags=outcome.tags,
    )

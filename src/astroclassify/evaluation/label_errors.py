"""Suspected label errors: images whose own label gets little probability from a model that never saw them.

Out-of-fold probabilities come from models that never trained on the image, so a confident
disagreement points at a label worth a human look (confident learning, Northcutt et al.).
Cross-validation (``train --cv``) and the learning loop's cleaning both judge with this one rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["SUSPECT_THRESHOLD", "LabelDoubt", "doubted_labels"]

SUSPECT_THRESHOLD = 0.2  # its own label under 20% out of fold


@dataclass(frozen=True)
class LabelDoubt:
    """Row ``index``'s label had ``p_label``; the model preferred ``predicted`` at ``confidence``."""

    index: int
    predicted: int
    confidence: float
    p_label: float


def doubted_labels(
    proba: np.ndarray, y: np.ndarray, rows: Iterable[int] | None = None, *, threshold: float = SUSPECT_THRESHOLD
) -> list[LabelDoubt]:
    """Rows (all, or ``rows``) whose out-of-fold probability for their label ``y`` is under ``threshold``; lowest first."""
    out = []
    for i in range(len(y)) if rows is None else rows:
        p_label = float(proba[i, y[i]])
        if p_label < threshold:
            j = int(np.argmax(proba[i]))
            out.append(LabelDoubt(int(i), j, round(float(proba[i, j]), 4), round(p_label, 4)))
    return sorted(out, key=lambda d: d.p_label)

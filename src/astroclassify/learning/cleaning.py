"""Likely label errors among gathered labels, by out-of-fold predictions (confident learning).

Each gathered image is scored by a classifier that never saw its label: logistic regression
on the champion's embeddings, fitted on the champion's own training images plus the other
folds of the gathered ones (cleanlab's recipe: a simple model over a good representation).
An image whose out-of-fold probability for its own label is under the threshold is a
suspect: kept out of training and shown for review. Out-of-fold on embeddings costs one
forward pass per image, not K trainings of the network, so it runs on every loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astroclassify.evaluation.label_errors import SUSPECT_THRESHOLD, doubted_labels
from astroclassify.inference.embedding import embed_images
from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.learning.snapshot import LabelRow

__all__ = ["SUSPECT_THRESHOLD", "Suspect", "find_label_errors"]


@dataclass(frozen=True)
class Suspect:
    """A gathered label the out-of-fold model doubts: what it says instead, and how sure."""

    row: LabelRow
    predicted: str
    confidence: float
    p_label: float


def find_label_errors(
    predictor: OnnxPredictor,
    rows: Sequence[LabelRow],
    reference: Sequence[tuple[Path, str]] = (),
    *,
    folds: int = 5,
    threshold: float = SUSPECT_THRESHOLD,
    seed: int = 0,
) -> list[Suspect]:
    """Rows whose label gets under ``threshold`` out of fold; lowest first.

    Parameters
    ----------
    predictor : OnnxPredictor
        The champion: its embeddings are the representation.
    rows : sequence of LabelRow
        The gathered labels to check.
    reference : sequence of (path, label)
        Trusted labelled images (the champion's training split) that always train the
        out-of-fold model and are never judged.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if not rows:
        return []
    labels = list(predictor.labels)
    x_rows = embed_images(predictor, [r.path for r in rows])
    x_ref = embed_images(predictor, [p for p, _ in reference])
    y_rows = np.array([labels.index(r.label) for r in rows])
    y_ref = np.array([labels.index(lab) for _, lab in reference], dtype=int)
    fold = np.random.default_rng(seed).permutation(len(rows)) % max(2, min(folds, len(rows)))
    proba = np.zeros((len(rows), len(labels)))
    for f in np.unique(fold):
        fit = fold != f
        x = np.concatenate([x_ref, x_rows[fit]])
        y = np.concatenate([y_ref, y_rows[fit]])
        if len(np.unique(y)) < 2:  # nothing to contrast with: no evidence against any label
            proba[fold == f, y_rows[fold == f]] = 1.0
            continue
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced"))
        clf.fit(x, y)
        proba[np.ix_(fold == f, clf.classes_)] = clf.predict_proba(x_rows[fold == f])
    return [
        Suspect(rows[d.index], labels[d.predicted], d.confidence, d.p_label)
        for d in doubted_labels(proba, y_rows, threshold=threshold)
    ]
